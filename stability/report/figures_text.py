"""The words around the figures: how to read each one, and the protocol notices a section shows.

A *protocol notice* is a run's ``definition["note"]`` (e.g. PTB trained on its validation
file): a caveat that changes what every number of that task means, so the page shows it at
the top of the task's section (:func:`protocol_notice`), and its figures carry it in their
title (:attr:`.figures_base.FigureResult.notice`).
"""
from __future__ import annotations

from .data import Collection

#: what every line and band is, in the subtitle of the figures drawn by :func:`.figures_base.draw_lines`
BAND_TEXT = "line: mean over seeds (geometric on a log axis), band: 95% Student-t interval over seeds"

HOW_TO_READ = {
    "jacobian_norm": (
        "The norm of the Jacobian ∂h_{t+g}/∂h_t: how much a perturbation of the hidden state is amplified or "
        "damped after g steps, on log–log axes. A flat line at 1 means gradients neither vanish nor explode over "
        "that many steps; a line falling towards 0 means gradients vanish (dependencies that long cannot be "
        "learned); a rising line means they explode. The slope is the decay rate; the gap where a line crosses 0.5 "
        "is the half-life. Each panel has its own y-axis: compare heights within a panel, not across panels. "
        "A ▼ on the dotted floor line is a norm that underflowed the floating-point format: the true value is at "
        "or below the floor, not the value printed."),
    "gradient_flow": (
        "The norm of the gradient of the loss with respect to the hidden state at each time step t (log scale). "
        "The loss sits at the end of the sequence, so small t is far from it: a flat profile means early steps "
        "receive as much learning signal as late ones; a profile that drops towards small t means gradients vanish "
        "on the way back, one that rises means they explode. Each panel has its own y-axis."),
    "learning_curves": (
        "The loss against the training step (log scale), one color per configuration. The solid line is the "
        "training loss, smoothed (the note says how); the line with open circles is the loss on the validation "
        "split; a star is the test value at the end of training. The black dashed line is the task's baseline, "
        "the loss of the best input-independent guess (copy: blanks, then uniform over the symbols; adding: always "
        "predict 1; language models: a unigram model). A curve on the baseline has learned nothing the guess does "
        "not know; a validation curve that rises while the training curve falls is overfitting."),
    "singular_values_training": (
        "The largest and smallest singular value of the transition matrix W at the probes scheduled during "
        "training. Both at 1 means W is orthogonal (norm-preserving); σ_max above 1 lets gradients explode, "
        "σ_min below 1 lets them vanish. Spectral-RNN keeps every σ inside [center − margin, center + margin] by "
        "construction; orthogonal parameterizations pin both at 1."),
    "singular_values_init_final": (
        "The range [σ_min, σ_max] of the singular values of W, one row per configuration (log scale): the open bar "
        "at initialization, the filled bar after training. A single point at 1 is an orthogonal W (norms "
        "preserved in every direction); a bar reaching left of 1 lets gradients vanish, right of 1 lets them "
        "explode. How far the filled bar moved from the open one is what training did to W."),
    "singular_value_spectrum": (
        "All singular values of W in descending order, at initialization and after training. A flat spectrum at "
        "1 is an orthogonal W; the spread of the spectrum is the condition number."),
    "lyapunov_spectrum": (
        "The Lyapunov exponents of the hidden-state dynamics in descending order (per step). A top exponent "
        "above 0 means perturbations grow along the trajectory (explosion), below 0 that they shrink (vanishing "
        "gradients); exponents at 0 are marginally stable, the regime long memory needs."),
    "speed": (
        "The median time per training step against the hidden size (log–log). The slope shows how the cost grows "
        "with n: slope 2 is the n×n matrix products, a steeper slope an O(n³) construction of W. Lower is faster; "
        "compare lines at the same n."),
    "options_grid": (
        "One cell per combination of two options of one transition (rows × columns), colored by a figure of "
        "merit and printed in the cell: the half-life of the Jacobian norm (steps until it halves; longer is "
        "longer memory) or the test loss/accuracy after training. A row or column of one color means that option "
        "makes no difference to this figure; read the printed numbers, since the color scale spans only the "
        "values present (the panel title gives their range). A cell marked “>” is a half-life beyond the largest "
        "gap measured: an extrapolation, only a lower bound."),
}

COINCIDE_TEXT = ("Some lines coincide exactly (identical values at every point): {groups}. They are drawn one "
                 "over the other, thick under thin, with different markers, so each color stays visible.")


def protocol_notes(coll: Collection, kind: str, name: str) -> list[str]:
    """The distinct ``definition["note"]`` texts of the finished runs of one experiment."""
    out: list[str] = []
    fin = coll.finished
    for cfg in fin.loc[(fin["kind"] == kind) & (fin["name"] == name), "config"]:
        note = (cfg.get("definition") or {}).get("note")
        if note and str(note) not in out:
            out.append(str(note))
    return out


def protocol_notice(coll: Collection, kind: str, name: str) -> str:
    """The caveat the page shows at the top of the section on one experiment ("" where none).

    For example ``"Protocol of the ptb task: trained on the valid file, evaluated on test; not the
    standard protocol. Its numbers are not comparable with published ones."``
    """
    notes = protocol_notes(coll, kind, name)
    if not notes:
        return ""
    text = "; ".join(n.rstrip(".") for n in notes)
    standard = any("not the standard protocol" in n for n in notes)
    return (f"Protocol of the {name} {kind}: {text}."
            + (" Its numbers are not comparable with published ones." if standard else ""))


def protocol_notices(coll: Collection) -> dict[tuple[str, str], str]:
    """(kind, name) -> :func:`protocol_notice`, for every experiment that has one."""
    fin = coll.finished
    out = {}
    for kind, name in dict.fromkeys(zip(fin["kind"], fin["name"])):
        text = protocol_notice(coll, kind, name)
        if text:
            out[(kind, name)] = text
    return out
