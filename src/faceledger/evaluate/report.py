"""The evaluation report: plain-language summary first, then plots, then the figures and how they were
computed.

:func:`summary_lines` turns the JSON report into short sentences a person who is not an engineer can read;
:func:`write_outputs` writes ``report.json``, ``report.md`` and the PNG plots into one folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from faceledger.evaluate.plots import plot_groups, plot_open_set_det, plot_open_set_rates, plot_roc, plot_scores
from faceledger.evaluate.runner import MAX_LISTED, Evaluation

__all__ = ["clean_json", "one_in", "summary_lines", "to_markdown", "write_outputs"]


def clean_json(value: Any) -> Any:
    """The value with NaN and infinities replaced by None, so it is strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def one_in(rate: float) -> str:
    """``0.00123`` -> ``"1 in 813"``; rounds to two significant figures above 100."""
    if rate <= 0:
        return "none"
    n = 1.0 / rate
    if n < 1.5:
        return "nearly every one"
    if n >= 100:
        digits = math.floor(math.log10(n)) - 1
        n = round(n, -digits)
    return f"1 in {round(n):,}"


def _pct(x: float) -> str:
    if x == 0:
        return "0%"
    if x >= 0.01:
        return f"{100 * x:.1f}%"
    return f"{100 * x:.2g}%"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Plain-language sentences summarising the report, most important first."""
    lines: list[str] = []
    ds = report["dataset"]
    ver = report.get("verification")
    thr = report.get("threshold") or {}
    if ver is None:
        lines.append(
            f"{ds['images']} images were read, but there were not enough pairs of photos to measure "
            "recognition "
            "accuracy: " + "; ".join(report.get("notes", []))
        )
    else:
        g, i = ver["genuine_pairs"], ver["impostor_pairs"]
        lines.append(
            f"faceledger compared {g:,} pairs of photos of the same person and {i:,} pairs of photos of "
            f"different people ({ds['images']:,} images, {ds['identities']:,} people)."
        )
        at = ver["at_threshold"]
        t = thr["value"]
        fm, fmr = at["false_matches"], at["fmr"]
        if fm > 0:
            lines.append(
                f"At the threshold {t:.3f}, about {one_in(fmr)} comparisons of different people was wrongly "
                f"called a match ({fm:,} of {i:,}; with 95% confidence the true rate is between "
                f"{one_in(at['fmr_ci'][1])} and {one_in(at['fmr_ci'][0])})."
            )
        else:
            lines.append(
                f"At the threshold {t:.3f}, none of the {i:,} comparisons of different people was "
                "wrongly called "
                f"a match; with this many comparisons the true rate could still be as high as about "
                f"{one_in(at['fmr_ci'][1])}."
            )
        fnmr = at["fnmr"]
        if at["false_non_matches"] > 0:
            lines.append(
                f"At the same threshold, {_pct(fnmr)} of comparisons of the same person were missed "
                f"(about {one_in(fnmr)}; {at['false_non_matches']:,} of {g:,})."
            )
        else:
            lines.append(f"At the same threshold, every one of the {g:,} comparisons of the same person matched.")
        lines.append(f"The threshold comes from {thr['source']}.")
        lines.append(
            f"Overall separation: a same-person pair scores higher than a different-person pair "
            f"{_pct(ver['auc'])} of the time (AUC {ver['auc']:.4f}); the equal error rate is "
            f"{_pct(ver['eer'])}."
        )
        unsupported = [e["fmr_target"] for e in ver["tar_at_fmr"] if not e["supported"]]
        if unsupported:
            rates = ", ".join(f"{x:g}" for x in unsupported)
            lines.append(
                f"With {i:,} comparisons of different people, false-match rates below about "
                f"{one_in(10 / i)} cannot be measured reliably, so the accept rate at a false-match rate of "
                f"{rates} is not reported."
            )
    ident = report.get("identification") or {}
    closed = ident.get("closed_set")
    if closed:
        lines.append(
            f"Searching {closed['probes']:,} photos against one enrolled photo of each of "
            f"{closed['gallery']:,} "
            f"people, the right person came first {_pct(closed['rank1'])} of the time and was among "
            "the top five "
            f"{_pct(closed['rank5'])} of the time."
        )
    opened = ident.get("open_set")
    if opened and opened.get("at_threshold"):
        at = opened["at_threshold"]
        lines.append(
            f"Searching for {opened['held_out_identities']} people who were never enrolled, "
            f"{_pct(at['fpir'])} of searches wrongly returned someone at the threshold; enrolled people were "
            f"missed in {_pct(at['fnir'])} of searches."
        )
    lines += _open_set_summary(ident.get("by_gallery_size"))
    det = report.get("detection")
    if det and det["expected_faces"]:
        lines.append(
            f"Face detection found {det['found']:,} of {det['expected_faces']:,} faces in the "
            f"{det['images']:,} images whose face count is known ({_pct(det['recall'])}), with "
            f"{det['false_detections']:,} extra detections."
        )
    dem = report.get("demographics")
    if dem:
        compared = [g["group"] for g in dem["groups"] if g["fmr_comparable"] or g["fnmr_comparable"]]
        too_few = [g["group"] for g in dem["groups"] if not (g["fmr_comparable"] or g["fnmr_comparable"])]
        if dem["warnings"]:
            lines.append(
                "Error rates differ between the groups you labeled more than allowed "
                f"(at most {dem['max_ratio']:g}x the best group): " + "; ".join(dem["warnings"]) + "."
            )
        elif compared:
            lines.append(
                "Among the groups you labeled with enough photo pairs to compare "
                f"({', '.join(compared)}), no "
                f"group's false-match or false-non-match rate is more than {dem['max_ratio']:g}x the best "
                "group's at this threshold."
            )
        if too_few:
            lines.append(
                f"{len(too_few)} group(s) have too few photo pairs for their error rates to be compared: "
                f"{', '.join(too_few)} (their rates are still listed, with wide intervals)."
            )
    fail = report["failures"]
    parts = []
    if fail["unreadable"]:
        parts.append(f"{len(fail['unreadable'])} could not be read")
    if fail["no_face"]:
        parts.append(f"{len(fail['no_face'])} had no face found")
    if fail["several_faces"]:
        parts.append(f"{len(fail['several_faces'])} labeled photos showed several faces (the largest was used)")
    if parts:
        lines.append("Of the images, " + ", ".join(parts) + "; they are listed at the end.")
    return lines


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if x != 0 and abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return str(x)


def _ratio(group: dict[str, Any], key: str) -> str:
    if not group[f"{key}_comparable"]:
        return "too few pairs"
    value = group[f"{key}_ratio_to_best"]
    return ("≥ " if group[f"{key}_ratio_is_lower_bound"] else "") + _fmt(value, 2)


def to_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: summary, plots, tables, failures, method."""
    ds = report["dataset"]
    out: list[str] = [f"# Face recognition evaluation: {ds['name']}", ""]
    out += ["## In short", ""]
    out += [f"- {line}" for line in report.get("summary") or summary_lines(report)]
    out.append("")
    plots = report.get("plots") or {}
    if plots:
        out += ["## Pictures", ""]
        captions = {
            "roc": "How often the same person is accepted (up) for each rate of wrongly matched "
            "different people "
            "(right, log scale). Higher and further left is better.",
            "scores": "Similarity of same-person pairs (green) and different-person pairs (red). The "
            "dashed line "
            "is the threshold: pairs to its right are called a match.",
            "groups": "Error rates per group at one threshold, with 95% intervals.",
            "open_set_rates": "Open-set search per gallery size N: share of people never enrolled who get a "
            "candidate (left; dashed: what the 1:1 false-match rate predicts) and share of enrolled people not "
            "found (right), against the threshold.",
            "open_set_det": "Misses against false positives of open-set search, one curve per gallery size; the "
            "dots mark the lowest threshold meeting the target FPIR.",
        }
        for key, file in plots.items():
            out += [f"![{key}]({file})", "", f"*{captions.get(key, key)}*", ""]

    ver = report.get("verification")
    thr = report.get("threshold") or {}
    if ver:
        out += ["## Verification (1:1)", ""]
        out += [f"Pairs: {ver['pairs_rule']}.", ""]
        out += ["| figure | value |", "| --- | --- |"]
        out += [
            f"| genuine pairs (same person) | {ver['genuine_pairs']:,} |",
            f"| impostor pairs (different people) | {ver['impostor_pairs']:,} |",
            f"| AUC | {_fmt(ver['auc'], 5)} |",
            f"| EER | {_fmt(ver['eer'])} (threshold {_fmt(ver['eer_threshold'])}) |",
            f"| best accuracy | {_fmt(ver['best_accuracy']['accuracy'])} "
            f"(threshold {_fmt(ver['best_accuracy']['threshold'])}) |",
            f"| best balanced accuracy | {_fmt(ver['best_balanced_accuracy']['accuracy'])} "
            f"(threshold {_fmt(ver['best_balanced_accuracy']['threshold'])}) |",
        ]
        out.append("")
        out += ["| target FMR | TAR | threshold | measured FMR (95% interval) |", "| --- | --- | --- | --- |"]
        for e in ver["tar_at_fmr"]:
            if e["supported"]:
                out.append(
                    f"| {e['fmr_target']:g} | {_fmt(e['tar'])} | {_fmt(e['threshold'])} | "
                    f"{_fmt(e['fmr'])} ({_fmt(e['fmr_ci'][0])} – {_fmt(e['fmr_ci'][1])}) |"
                )
            else:
                out.append(f"| {e['fmr_target']:g} | {e['reason']} | | |")
        out.append("")
        at = ver["at_threshold"]
        out += [
            f"At the operating threshold **{thr['value']:.4f}** ({thr['source']}): FMR {_fmt(at['fmr'])} "
            f"({at['false_matches']:,} of {at['impostor_pairs']:,}; 95% interval {_fmt(at['fmr_ci'][0])} – "
            f"{_fmt(at['fmr_ci'][1])}), FNMR {_fmt(at['fnmr'])} ({at['false_non_matches']:,} of "
            f"{at['genuine_pairs']:,}; 95% interval {_fmt(at['fnmr_ci'][0])} – {_fmt(at['fnmr_ci'][1])}).",
            "",
        ]
        sg, si = ver["scores"]["genuine"], ver["scores"]["impostor"]
        out += [
            "| scores | mean | std | min | median | max |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| genuine | {_fmt(sg['mean'])} | {_fmt(sg['std'])} | {_fmt(sg['min'])} | "
            f"{_fmt(sg['percentiles']['p50'])} | {_fmt(sg['max'])} |",
            f"| impostor | {_fmt(si['mean'])} | {_fmt(si['std'])} | {_fmt(si['min'])} | "
            f"{_fmt(si['percentiles']['p50'])} | {_fmt(si['max'])} |",
            "",
        ]

    ident = report.get("identification")
    if ident:
        out += ["## Identification (1:N)", ""]
        closed = ident.get("closed_set")
        if closed:
            out += [
                f"Closed set ({closed['gallery_rule']}): {closed['gallery']} enrolled, "
                f"{closed['probes']} searches; "
                f"rank-1 {_fmt(closed['rank1'])}, rank-5 {_fmt(closed['rank5'])}.",
                "",
            ]
        opened = ident.get("open_set")
        if opened:
            out += [
                f"Open set: {opened['enrolled_identities']} identities enrolled, "
                f"{opened['held_out_identities']} "
                f"held out ({opened['held_out_rule']}); {opened['mated_searches']} mated and "
                f"{opened['non_mated_searches']} non-mated searches.",
                "",
                "| target FPIR | FNIR | threshold |",
                "| --- | --- | --- |",
            ]
            for p in opened["fnir_at_fpir"]:
                if p["supported"]:
                    out.append(f"| {p['fpir_target']:g} | {_fmt(p['fnir'])} | {_fmt(p['threshold'])} |")
                else:
                    out.append(f"| {p['fpir_target']:g} | {p['reason']} | |")
            if opened.get("at_threshold"):
                a = opened["at_threshold"]
                out += ["", f"At the operating threshold: FPIR {_fmt(a['fpir'])}, FNIR {_fmt(a['fnir'])}."]
            out.append("")
        for note in ident.get("notes", []):
            out += [f"- {note}"]
        if closed and closed["rank1_misses"]:
            out += ["", "<details><summary>Searches where someone else came first</summary>", ""]
            out += [
                "| photo | person | came first | similarity | person's similarity |",
                "| --- | --- | --- | --- | --- |",
            ]
            for miss in closed["rank1_misses"][:MAX_LISTED]:
                out.append(
                    f"| {miss['probe']} | {miss['identity']} | {miss['returned']} | "
                    f"{_fmt(miss['similarity'])} | "
                    f"{_fmt(miss['mate_similarity'])} |"
                )
            out += ["", "</details>", ""]

    out += _open_set_markdown((ident or {}).get("by_gallery_size"))
    det = report.get("detection")
    if det:
        out += ["## Detection", ""]
        out += [
            f"On {det['images']} images with a known number of faces ({det['method']}): {det['found']} of "
            f"{det['expected_faces']} faces found (recall {_fmt(det['recall'])}), "
            f"{det['missed_faces']} missed, "
            f"{det['false_detections']} extra detections; {det['exact_count_images']} images with "
            "exactly the "
            "expected count.",
            "",
        ]

    dem = report.get("demographics")
    if dem:
        out += ["## Demographic differentials", ""]
        out += [
            f"Groups are the labels in column `{ds['group_column']}` of your data; faceledger never "
            "infers them. "
            f"All rates at one threshold ({dem['threshold']:.4f}); FMR within a group uses impostor "
            "pairs whose two "
            f"photos are both in the group. Allowed ratio to the best group: {dem['max_ratio']:g}.",
            "",
            "| group | impostor pairs | FMR (95% interval) | FMR ratio | genuine pairs | FNMR (95% "
            "interval) | "
            "FNMR ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for g in dem["groups"]:
            fci = g["fmr_ci"] or [None, None]
            nci = g["fnmr_ci"] or [None, None]
            out.append(
                f"| {g['group']} | {g['impostor_pairs']:,} | {_fmt(g['fmr'])} ({_fmt(fci[0])} – "
                f"{_fmt(fci[1])}) | "
                f"{_ratio(g, 'fmr')} | {g['genuine_pairs']:,} | {_fmt(g['fnmr'])} "
                f"({_fmt(nci[0])} – {_fmt(nci[1])}) | {_ratio(g, 'fnmr')} |"
            )
        names = dem["cross_group_fmr"]["groups"]
        out += ["", "Cross-group FMR (impostor pairs with one photo in each group):", ""]
        out += ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for name, row in zip(names, dem["cross_group_fmr"]["fmr"], strict=True):
            out.append(f"| {name} | " + " | ".join(_fmt(v) for v in row) + " |")
        out.append("")
        for w in dem["warnings"]:
            out.append(f"- **Warning**: {w}")
        out.append("")

    fail = report["failures"]
    if any(fail.values()):
        out += ["## Images that need a look", ""]
        for key, title in (
            ("unreadable", "Could not be read"),
            ("no_face", "No face found"),
            ("several_faces", "Several faces (the largest was used)"),
        ):
            items = fail[key]
            if not items:
                continue
            out += [f"**{title}** ({len(items)}):", ""]
            for item in items[:MAX_LISTED]:
                extra = item.get("reason") or (f"{item['faces']} faces" if "faces" in item else item.get("identity"))
                out.append(f"- `{item['image']}`" + (f": {extra}" if extra else ""))
            if len(items) > MAX_LISTED:
                out.append(f"- ... and {len(items) - MAX_LISTED} more (all in report.json)")
            out.append("")

    out += ["## How these numbers were computed", ""]
    st = report["settings"]
    model = report.get("model") or {}
    if model:
        out.append(
            f"- Recognizer `{model.get('recognizer')}` (SHA-256 "
            f"{str(model.get('recognizer_sha256'))[:16]}…), "
            f"detector `{model.get('detector')}`; faceledger {model.get('faceledger_version')}."
        )
    out += [
        f"- One face per image: the {st['face_selection']}.",
        f"- A comparison is a match when its similarity is at or above the threshold; {st['support_rule']}.",
        f"- Intervals: {st['interval']}, {st['confidence']:.0%} confidence.",
        f"- Images: {report['images']['total']} ({report['images']['from_cache']} embeddings from the cache).",
    ]
    for note in report.get("notes", []):
        out.append(f"- {note}")
    out.append("")
    return "\n".join(out)


def _bounded(point: dict[str, Any], bound: bool = False) -> str:
    """Measured FPIR with its pooled count (and its upper bound), or only the bound when none was false."""
    if point["false_positives"] == 0:
        return f"0 of {point['non_mated_searches_pooled']:,} (< {_pct(point['fpir_upper_95'])})"
    upper = f"; ≤ {_pct(point['fpir_upper_95'])}" if bound else ""
    return f"{_pct(point['fpir'])} ({point['false_positives']:,} of {point['non_mated_searches_pooled']:,}{upper})"


def _formula_cell(formula: dict[str, Any] | None) -> str:
    if formula is None:
        return "n/a"
    if formula["threshold"] is None:
        return str(formula["reason"])
    got = formula["measured"]
    return f"{formula['threshold']:.4f}: FPIR {_bounded(got)}, FNIR {_pct(got['fnir'])}"


def _pct_or_na(x: float | None) -> str:
    return "n/a" if x is None else _pct(x)


def _open_set_summary(sweep: dict[str, Any] | None) -> list[str]:
    if not sweep or not sweep["sizes"]:
        return []
    sizes = sweep["sizes"]
    first, last = sizes[0], sizes[-1]
    lines = []
    if "at_operating_threshold" in last:
        a0, a1 = first["at_operating_threshold"], last["at_operating_threshold"]
        predicted = ""
        if "predicted_fpir_dataset" in a1:
            predicted = (
                f" (the 1:1 false-match rate predicts {_pct(a0['predicted_fpir_dataset'])} and "
                f"{_pct(a1['predicted_fpir_dataset'])})"
            )
        lines.append(
            f"Searching {last['non_mated_searches']:,} photos of people never enrolled against galleries of "
            + ", ".join(str(s["size"]) for s in sizes)
            + f" people ({last['draws']} random galleries each), at the threshold {a1['threshold']:.3f}, "
            f"{_pct(a0['fpir'])} got a candidate with {first['size']} enrolled and {_pct(a1['fpir'])} with "
            f"{last['size']}{predicted}; {_pct(a1['fnir'])} of enrolled people were missed at {last['size']}."
        )
    for size in sizes:
        tgt = size["target"]
        point = tgt["measured"]
        confirmed = tgt["confirmed"]
        sure = (
            f"{confirmed['threshold']:.3f} to be 95% sure of it ({_pct(confirmed['fnir'])} missed there)"
            if confirmed
            else f"no threshold can show it with {size['non_mated_searches']:,} searches"
        )
        card = tgt.get("formula_card")
        formula = ""
        if card and card["threshold"] is not None:
            formula = (
                f"; the model card's calibration with the 1 - (1 - FMR)^N formula gives {card['threshold']:.3f}, "
                f"where {_pct(card['measured']['fpir'])} got a candidate"
            )
        lines.append(
            f"For at most {_pct(tgt['fpir_target'])} of unknown people to get a candidate with {size['size']} "
            f"enrolled, the threshold must be at least {point['threshold']:.3f} (measured {_bounded(point)}), "
            f"where {_pct(point['fnir'])} of enrolled people are missed, and {sure}{formula}."
        )
    return lines


def _open_set_markdown(sweep: dict[str, Any] | None) -> list[str]:
    if not sweep:
        return []
    st = sweep["settings"]
    out = ["## Open-set identification by gallery size", ""]
    out += [f"- {note}" for note in sweep["notes"]]
    if not sweep["sizes"]:
        return [*out, ""]
    out += [
        f"{st['enrollable_identities']} identities could be enrolled, {st['not_enrolled_identities']} never are "
        f"({st['split_rule']}). Galleries: {st['gallery_rule']}. Rank: {st['rank_rule']}. Bounds: "
        f"{st['bound_rule']}. Formula: {st['formula']}"
        + (f"; {st['calibration']}" if st["calibration"] else "")
        + ".",
        "",
    ]
    sizes = sweep["sizes"]
    if "at_operating_threshold" in sizes[0]:
        t = sizes[0]["at_operating_threshold"]["threshold"]
        out += [
            f"At the operating threshold **{t:.4f}**:",
            "",
            "| N | non-mated searches | mated searches per draw | FPIR measured (pooled) | FPIR predicted from "
            "this data's 1:1 FMR | FPIR predicted from the model card | FNIR |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for size in sizes:
            a = size["at_operating_threshold"]
            out.append(
                f"| {size['size']} | {size['non_mated_searches']:,} | {size['mated_searches_per_draw']:.1f} | "
                f"{_bounded(a)} | {_pct_or_na(a.get('predicted_fpir_dataset'))} | "
                f"{_pct_or_na(a.get('predicted_fpir_card'))} | {_pct(a['fnir'])} ({a['misses']:,} of "
                f"{a['mated_searches_pooled']:,}) |"
            )
        out.append("")
    target = sizes[0]["target"]["fpir_target"]
    out += [
        f"For a target FPIR of **{target:g}**:",
        "",
        "| N | lowest threshold measured to meet it | FPIR there (pooled; one-sided 95% bound) | FNIR there | "
        "lowest threshold whose 95% bound meets it | formula threshold from this data's 1:1 FMR | formula "
        "threshold from the model card |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        tgt = size["target"]
        p, c = tgt["measured"], tgt["confirmed"]
        sure = f"{c['threshold']:.4f} (FNIR {_pct(c['fnir'])})" if c else str(tgt["confirmed_reason"])
        out.append(
            f"| {size['size']} | {p['threshold']:.4f} | {_bounded(p, bound=True)} | "
            f"{_pct(p['fnir'])} | {sure} | {_formula_cell(tgt['formula_dataset'])} | "
            f"{_formula_cell(tgt['formula_card'])} |"
        )
    return [*out, ""]


def write_outputs(evaluation: Evaluation, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = evaluation.report
    written: dict[str, Path] = {}
    plot_files: dict[str, str] = {}
    thr = (report.get("threshold") or {}).get("value")
    if plots and evaluation.roc is not None:
        name = report["dataset"]["name"]
        written["roc"] = plot_roc(evaluation.roc, out_dir / "roc.png", thr, title=f"ROC: {name}")
        written["scores"] = plot_scores(evaluation.genuine, evaluation.impostor, out_dir / "scores.png", thr)
        plot_files.update(roc="roc.png", scores="scores.png")
        sweep = (report.get("identification") or {}).get("by_gallery_size") or {}
        if sweep.get("curves"):
            written["open_set_rates"] = plot_open_set_rates(sweep, out_dir / "openset_rates.png", thr)
            written["open_set_det"] = plot_open_set_det(sweep, out_dir / "openset_det.png")
            plot_files.update(open_set_rates="openset_rates.png", open_set_det="openset_det.png")
        if report.get("demographics"):
            written["groups"] = plot_groups(report["demographics"], out_dir / "groups.png")
            plot_files["groups"] = "groups.png"
    report["plots"] = plot_files
    report["summary"] = summary_lines(report)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(clean_json(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    md_path = out_dir / "report.md"
    md_path.write_text(to_markdown(report), encoding="utf-8")
    written["json"] = json_path
    written["markdown"] = md_path
    return written
