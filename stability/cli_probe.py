"""``stability probe``: one probe measured on a freshly initialized model, printed as a table.

Transition options and the probe's own options are given as ``--NAME VALUE`` (see
``stability list``); a misspelt option gets a "did you mean" listing both kinds. ``--transition``
also takes a gated cell (``lstm``, ``gru``), whose options are ``--layers``, ``--bidirectional``
and ``--readout`` (``all``: over the T steps).
"""
from __future__ import annotations

from .cli_common import CLIError, EXIT_OK, device_or_error, duration

# ---------------------------------------------------------------------------------------
# stability probe
# ---------------------------------------------------------------------------------------
def _literal(text: str):
    """A command-line value: int, float, true/false/none, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _extra_options(extra: list[str]) -> dict:
    """``--key value`` / ``--key=value`` pairs (keys with - read as _)."""
    opts: dict = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--"):
            raise CLIError(f"unexpected argument {tok!r}")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise CLIError(f"--{key} needs a value")
            value = extra[i + 1]
            i += 1
        i += 1
        opts[key.replace("-", "_")] = _literal(value)
    return opts


PROBE_GAPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: the options of a gated cell on the command line (model options)
GATED_PROBE_OPTIONS = ("layers", "bidirectional", "readout")
PROBE_FLAGS = ("--transition", "--hidden", "--T", "--batch", "--input-size", "--input-scale", "--nonlinearity",
               "--seed", "--device", "--dtype", "--threads")


def cmd_probe(args, extra: list[str]) -> int:
    from . import probes, transitions
    from .checks import did_you_mean
    from .config import RunConfig
    from .network import GATED_CELLS, available, is_gated
    from .runner import Resolver, coerce_like, execute_run, last_line

    names = available()
    if args.transition not in names:
        raise CLIError(f"unknown transition {args.transition!r}{did_you_mean(args.transition, names)}; "
                       f"available: {', '.join(transitions.available())}; gated cells: {', '.join(GATED_CELLS)}")
    gated = is_gated(args.transition)
    probe = probes.get_probe(args.probe)
    t_allowed = GATED_PROBE_OPTIONS if gated else transitions.option_names(args.transition)
    p_allowed = probe.options()
    t_defaults = {} if gated else transitions.option_defaults(args.transition)
    topts, popts = {}, {}
    for key, value in _extra_options(extra).items():
        if key in t_allowed:
            topts[key] = coerce_like(value, t_defaults.get(key))
        elif key in p_allowed:
            popts[key] = coerce_like(value, p_allowed[key])
        else:
            known = PROBE_FLAGS + tuple("--" + k for k in t_allowed) + tuple("--" + k for k in p_allowed)
            raise CLIError(f"unknown option --{key}{did_you_mean('--' + key, known)}; options of transition "
                           f"{args.transition!r}: {', '.join('--' + a for a in t_allowed) or '(none)'}; of probe "
                           f"{probe.name!r}: {', '.join('--' + a for a in p_allowed) or '(none)'}; and "
                           f"{', '.join(PROBE_FLAGS)}")
    for flag, value in (("--threads", args.threads), ("--hidden", args.hidden)):
        if value is not None and value < 1:
            raise CLIError(f"{flag} {value}: must be >= 1")
    device = device_or_error(args.device)
    given = {"T": args.T, "batch": args.batch, "input_size": args.input_size, "input_scale": args.input_scale}
    res = Resolver("stability probe")
    options = res.probe_options(probe.name, {**{k: given[k] for k in probe.input_options()}, **popts}, "--probe")
    model, nonlinearity = {}, args.nonlinearity
    if gated:  # the cell's options are model options; its nonlinearities are its own
        model = res.row_model(args.transition, res.model_options("--transition", topts), "--transition", [],
                              sequence_length=options.get("T"))
        res.try_probe(probe.name, options, args.hidden, args.nonlinearity, args.probe, args.transition, model)
        resolved, nonlinearity = {}, "tanh"
    else:
        resolved = res.transition(args.transition, res.transition_options(args.transition, topts, "--transition"),
                                  args.hidden, "--transition")
        res.try_probe(probe.name, options, args.hidden, args.nonlinearity, args.probe)
    cfg = RunConfig(suite="", kind="probe", name=probe.name, transition=args.transition,
                    transition_options=resolved, hidden_size=args.hidden, nonlinearity=nonlinearity,
                    options=options, train={}, seed=args.seed, device=device, dtype=args.dtype, model=model)
    result = execute_run(cfg, {"threads": args.threads})
    if result["error"]:
        raise CLIError(f"the {probe.name} probe failed: {last_line(result['error'])}")
    _print_probe(probe, result["metrics"], topts, options, args, device)
    return EXIT_OK


def _print_probe(probe, df, topts: dict, options: dict, args, device: str) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in topts.items())
    what = f"{args.transition}({shown})" if shown else args.transition
    inputs = " ".join(f"{k}={v}" for k, v in options.items() if k in ("T", "batch"))
    nonlinearity = "" if args.transition in ("lstm", "gru") else args.nonlinearity
    print(f"{probe.name} at init: {what} hidden={args.hidden} {nonlinearity} {inputs} seed={args.seed} "
          f"{device}".replace("  ", " "))
    scalars = df[(df.split == "init") & (df.step == 0) & df.metric.isin(probe.scalars)]
    for _, r in scalars.iterrows():
        print(f"  {r.metric:<21}{r.value:.6g}")
    params = df[df.metric == "params"].value
    if len(params):
        took = duration(float(df[df.metric == "wall_time"].value.iloc[0]))
        print(f"  {'params':<21}{int(params.iloc[0])}   (measured in {took})")
    series = df[(df.split == "init") & df.metric.isin(probe.series)]
    if probe.name == "jacobian" and len(series):
        table = series.pivot_table(index="step", columns="metric", values="value")
        gaps = sorted(table.index)
        show = sorted({min(gaps, key=lambda g: abs(g - want)) for want in PROBE_GAPS if want <= max(gaps)}
                      | {gaps[-1]})
        print(f"\n  {'gap':>6}  {'‖J‖₂ (mean)':>14}  {'‖J‖_F (mean)':>14}")
        for g in show:
            row = table.loc[g]
            print(f"  {g:>6}  {row.get('jacobian_spectral', float('nan')):>14.6g}  "
                  f"{row.get('jacobian_frobenius', float('nan')):>14.6g}")
    elif len(series):
        for metric, part in series.groupby("metric"):
            vals = part.sort_values("step").value.tolist()
            head = ", ".join(f"{v:.4g}" for v in vals[:8])
            print(f"  {metric} ({len(vals)}): {head}{', ...' if len(vals) > 8 else ''}")
