#!/usr/bin/env python3
"""nutmeg's MPI engine beside its Python peers on FEBRL: the recordlinkage toolkit (unsupervised ECM) and
Splink 4 (DuckDB), each configured after its own documentation's FEBRL examples, on FEBRL4 (linkage,
dataset4a x dataset4b) and FEBRL3 (deduplication, dataset3) from ../shared/data/febrl.

Run by scripts/mpi-peers.sh, which makes the virtual environment with pinned versions, builds nutmeg's
`febrl` example (`cargo build -p mpi --release --example febrl`) and passes it with --nutmeg: each round runs
it (`febrl --json`, one JSON line per set) and then each peer, so that all meet about the same load.

What is timed, for every tool: from the records in memory to the final answer (blocking, comparing, training,
classifying, and the one-to-one step or clustering). Python imports and reading the CSV files are not timed
(reading is reported apart); nor is scoring against the truth. Each tool runs --runs times (rounds) and the
table keeps its best time; the accuracy of every run is printed and must not change between runs.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import recordlinkage as rl
import splink
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "febrl"
RL_GUIDE = "recordlinkage-guide"  # recordlinkage with its guides' six comparisons
SPLINK_U_PAIRS = float(os.environ.get("MPI_PEERS_SPLINK_U_PAIRS", "1e6"))
THRESHOLD = 0.5  # match probability at or above which a pair is a link, for every tool


def load(name):
    """A FEBRL CSV as strings indexed by rec_id; empty values are missing (NaN), as both peers expect."""
    df = pd.read_csv(DATA / name, dtype=str, skipinitialspace=True, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    df = df.apply(lambda s: s.str.strip()).replace("", None)
    return df.set_index("rec_id", drop=False)


def person(rec_id):
    """rec-12-dup-0 -> rec-12: the FEBRL convention for who a record is."""
    return "-".join(rec_id.split("-")[:2])


def link_truth(a, b):
    by_person = defaultdict(list)
    for r in b.index:
        by_person[person(r)].append(r)
    return {(x, y) for x in a.index for y in by_person.get(person(x), [])}


def dedup_truth(d):
    by_person = defaultdict(list)
    for r in d.index:
        by_person[person(r)].append(r)
    truth = set()
    for members in by_person.values():
        for i, x in enumerate(members):
            for y in members[i + 1 :]:
                truth.add(tuple(sorted((x, y))))
    return truth


def accuracy(predicted, truth):
    predicted = set(predicted)
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(truth)
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "links": len(predicted),
    }


def cluster_pairs(groups):
    """Every pair within each group (sorted ids), as nutmeg counts a deduplication's answer."""
    pairs = set()
    for members in groups:
        members = sorted(members)
        for i, x in enumerate(members):
            for y in members[i + 1 :]:
                pairs.add((x, y))
    return pairs


# --- recordlinkage ---------------------------------------------------------------------------------------

# Blocking: the documentation's FEBRL guides block on given_name alone, which proposes only 66% of FEBRL4's
# true links (55% of FEBRL3's); recordlinkage joins several Block algorithms on one Index by OR, so we give it
# the five single-column blocks of Splink's FEBRL3 example (given name, surname, date of birth, social
# security id, postcode): 100% and 99.9% of the true pairs.
RL_BLOCKS = ["given_name", "surname", "date_of_birth", "soc_sec_id", "postcode"]


def rl_compare():
    # Binary comparisons, as ECMClassifier requires: exact, or a string similarity cut at the guides' 0.85
    # (Jaro-Winkler for names, Levenshtein for addresses). A missing value counts as disagreement (the
    # toolkit's default, missing_value=0).
    c = rl.Compare()
    c.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
    c.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    c.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    c.exact("soc_sec_id", "soc_sec_id", label="soc_sec_id")
    c.exact("street_number", "street_number", label="street_number")
    c.string("address_1", "address_1", method="levenshtein", threshold=0.85, label="address_1")
    c.string("address_2", "address_2", method="levenshtein", threshold=0.85, label="address_2")
    c.string("suburb", "suburb", method="levenshtein", threshold=0.85, label="suburb")
    c.exact("postcode", "postcode", label="postcode")
    c.exact("state", "state", label="state")
    return c


def rl_compare_guide():
    # The six comparisons of the toolkit's FEBRL guides ("Link two datasets", "Data deduplication"), as they
    # stand: no social security id, postcode, street number or address_2. Run as a second configuration to
    # show what the extra fields are worth.
    c = rl.Compare()
    c.exact("given_name", "given_name", label="given_name")
    c.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    c.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    c.exact("suburb", "suburb", label="suburb")
    c.exact("state", "state", label="state")
    c.string("address_1", "address_1", threshold=0.85, label="address_1")
    return c


def run_recordlinkage(dfs, compare=rl_compare):
    """dfs: [a, b] for linkage, [d] for deduplication."""
    stages = {}
    start = time.perf_counter()
    indexer = rl.Index()
    for column in RL_BLOCKS:
        indexer.block(column)
    candidates = indexer.index(*dfs)
    stages["block"] = time.perf_counter() - start
    features = compare().compute(candidates, *dfs)
    stages["compare"] = time.perf_counter() - start - sum(stages.values())
    ecm = rl.ECMClassifier()  # binarize=None: the features are binary already
    ecm.fit(features)
    probability = ecm.prob(features)
    links = probability[probability >= THRESHOLD].sort_values(ascending=False, kind="stable")
    stages["ecm"] = time.perf_counter() - start - sum(stages.values())
    if len(dfs) == 2:
        # The toolkit's greedy one-to-one linking, most probable links first.
        final = rl.OneToOneLinking().compute(links.index)
        final_pairs = set(final)
    else:
        # The toolkit's connected components: every pair within a component.
        components = rl.ConnectedComponents().compute(links.index)
        final_pairs = cluster_pairs(
            set(c.get_level_values(0)) | set(c.get_level_values(1)) for c in components
        )
    stages["one-to-one" if len(dfs) == 2 else "cluster"] = time.perf_counter() - start - sum(stages.values())
    seconds = time.perf_counter() - start
    norm = (lambda p: p) if len(dfs) == 2 else (lambda p: tuple(sorted(p)))
    return {
        "seconds": seconds,
        "stages": stages,
        "candidates": {norm(p) for p in candidates},
        "pairwise": {norm(p) for p in links.index},
        "final": {norm(p) for p in final_pairs},
    }


# --- Splink ----------------------------------------------------------------------------------------------

# Splink's FEBRL4 example (docs/demos/examples/duckdb/febrl4), its "detailed model".
SPLINK_FEBRL4 = dict(
    blocking_rules=[
        block_on("given_name", "surname"),
        "l.given_name = r.surname and l.surname = r.given_name",
        block_on("date_of_birth"),
        block_on("soc_sec_id"),
        block_on("state", "address_1"),
        block_on("street_number", "address_1"),
        block_on("postcode"),
    ],
    comparisons=lambda: [
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison(
            "date_of_birth", input_is_string=True, datetime_format="%Y%m%d", invalid_dates_as_null=True
        ),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
        cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
        cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
    ],
    deterministic_rules=[block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")],
    recall=0.8,
    em_rules=[block_on("date_of_birth"), block_on("postcode")],
    em_without_tf=True,
)

# Splink's FEBRL3 example (docs/demos/examples/duckdb/febrl3).
SPLINK_FEBRL3 = dict(
    blocking_rules=[
        block_on("soc_sec_id"),
        block_on("given_name"),
        block_on("surname"),
        block_on("date_of_birth"),
        block_on("postcode"),
    ],
    comparisons=lambda: [
        cl.NameComparison("given_name"),
        cl.NameComparison("surname"),
        cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
        cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
        cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
    ],
    deterministic_rules=[
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
    ],
    recall=0.9,
    em_rules=[block_on("date_of_birth"), block_on("postcode")],
    em_without_tf=False,
)


def run_splink(dfs):
    """dfs: [a, b] for linkage (link_only), [d] for deduplication (dedupe_only)."""
    link = len(dfs) == 2
    config = SPLINK_FEBRL4 if link else SPLINK_FEBRL3
    stages = {}
    start = time.perf_counter()
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only" if link else "dedupe_only",
        blocking_rules_to_generate_predictions=config["blocking_rules"],
        comparisons=config["comparisons"](),
    )
    tables = [df.reset_index(drop=True) for df in dfs]
    linker = Linker(
        tables if link else tables[0],
        settings,
        db_api=DuckDBAPI(),
        input_table_aliases=["a", "b"] if link else None,
        set_up_basic_logging=False,
    )
    stages["set up"] = time.perf_counter() - start
    linker.training.estimate_probability_two_random_records_match(
        config["deterministic_rules"], recall=config["recall"]
    )
    stages["prior"] = time.perf_counter() - start - sum(stages.values())
    # u from random pairs: 1e6 as in both FEBRL examples (MPI_PEERS_SPLINK_U_PAIRS to change it), with a seed
    # for repeatable numbers.
    linker.training.estimate_u_using_random_sampling(max_pairs=SPLINK_U_PAIRS, seed=2)
    stages["u"] = time.perf_counter() - start - sum(stages.values())
    for rule in config["em_rules"]:
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=config["em_without_tf"]
        )
    stages["m by EM"] = time.perf_counter() - start - sum(stages.values())
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD)
    pairwise = predictions.as_pandas_dataframe()
    stages["predict"] = time.perf_counter() - start - sum(stages.values())
    if link:
        # One-to-one: Splink's single best links, no record of either file in two links.
        clusters = linker.clustering.cluster_using_single_best_links(
            predictions, duplicate_free_datasets=["a", "b"], threshold_match_probability=THRESHOLD
        )
    else:
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=THRESHOLD
        )
    clustered = clusters.as_pandas_dataframe()
    stages["one-to-one" if link else "cluster"] = time.perf_counter() - start - sum(stages.values())
    seconds = time.perf_counter() - start

    def orient(l_id, r_id, l_src=None):
        if link:
            return (l_id, r_id) if l_src == "a" else (r_id, l_id)
        return tuple(sorted((l_id, r_id)))

    groups = clustered.groupby("cluster_id")["rec_id"].apply(list)
    if link:
        final = set()
        for members in groups:
            if len(members) == 2:
                x, y = members
                final.add((x, y) if x in dfs[0].index else (y, x))
    else:
        final = cluster_pairs(groups)
    # Not timed: every candidate pair the blocking rules proposed (a second prediction without a threshold).
    everything = linker.inference.predict().as_pandas_dataframe()
    src = "source_dataset_l" if link else None

    def pairs(frame):
        return {
            orient(l_id, r_id, s)
            for l_id, r_id, s in zip(
                frame["rec_id_l"], frame["rec_id_r"], frame[src] if src else [None] * len(frame)
            )
        }

    return {
        "seconds": seconds,
        "stages": stages,
        "candidates": pairs(everything),
        "pairwise": pairs(pairwise),
        "final": final,
    }


# --- the table -------------------------------------------------------------------------------------------


def measure(tool, set_name, run, truth):
    found = len(run["candidates"] & truth)
    return {
        "tool": tool,
        "set": set_name,
        **accuracy(run["final"], truth),
        "pairwise": accuracy(run["pairwise"], truth),
        "pair_completeness": found / len(truth),
        "pairs_compared": len(run["candidates"]),
        "seconds": run["seconds"],
        "stages": run["stages"],
    }


def best(results):
    """Per tool and set: the best time of the runs, the accuracy of the first (checked to be the same)."""
    out = {}
    for r in results:
        key = (r["tool"], r["set"])
        if key not in out:
            out[key] = dict(r, runs=[r["seconds"]])
            continue
        kept = out[key]
        kept["runs"].append(r["seconds"])
        if (r["f1"], r["pairs_compared"]) != (kept["f1"], kept["pairs_compared"]):
            kept["varied"] = True
        if r["seconds"] < kept["seconds"]:
            kept["seconds"] = r["seconds"]
            kept["stages"] = r.get("stages")
    return out


def table(results):
    rows = best(results)
    sets = [("febrl4", "FEBRL4 linkage"), ("febrl3", "FEBRL3 dedup")]
    tools = ["nutmeg", "recordlinkage", "splink", RL_GUIDE]
    lines = [
        "| set | tool | precision | recall | F1 | pairwise P / R / F1 | pair completeness | pairs compared | time (best) | runs | nutmeg faster |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for set_name, label in sets:
        ours = rows.get(("nutmeg", set_name))
        for tool in tools:
            r = rows.get((tool, set_name))
            if r is None:
                continue
            pw = r["pairwise"]
            ratio = f"{r['seconds'] / ours['seconds']:.1f}x" if ours and tool != "nutmeg" else ""
            lines.append(
                f"| {label} | {tool}{' (VARIED)' if r.get('varied') else ''} | {r['precision']:.4f} | "
                f"{r['recall']:.4f} | **{r['f1']:.4f}** | "
                f"{pw['precision']:.4f} / {pw['recall']:.4f} / {pw['f1']:.4f} | "
                f"{r['pair_completeness']:.4f} | {r['pairs_compared']:,} | {r['seconds']:.3f} s | "
                f"{' '.join(f'{s:.3f}' for s in r['runs'])} | {ratio} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each peer in this process (best time kept)")
    parser.add_argument(
        "--nutmeg",
        help="the built febrl example (run with --json at the start of every round, so that each round's "
        "tools meet the same load on a shared machine)",
    )
    parser.add_argument("--only", choices=["recordlinkage", "splink", RL_GUIDE], help="run one peer only")
    parser.add_argument("--json", type=Path, help="also write every run's results here")
    parser.add_argument(
        "--table", type=Path, nargs="+", help="only print the table of results saved before with --json (several files: best of all)"
    )
    args = parser.parse_args()
    if args.table:
        saved = [json.loads(line) for f in args.table for line in f.read_text().splitlines() if line]
        print(table(saved))
        return
    # Splink logs each training step at INFO; keep the output to the table.
    logging.getLogger("splink").setLevel(logging.WARNING)

    start = time.perf_counter()
    a, b, d = load("dataset4a.csv"), load("dataset4b.csv"), load("dataset3.csv")
    load_seconds = time.perf_counter() - start
    truth4, truth3 = link_truth(a, b), dedup_truth(d)
    print(
        f"read the three CSV files into pandas in {load_seconds:.3f} s (not timed below); "
        f"{len(truth4)} true links (FEBRL4), {len(truth3)} true pairs (FEBRL3)",
        file=sys.stderr,
    )

    results = []
    peers = {
        "recordlinkage": run_recordlinkage,
        "splink": run_splink,
        RL_GUIDE: lambda dfs: run_recordlinkage(dfs, rl_compare_guide),
    }
    for run in range(args.runs):
        if args.nutmeg:
            out = subprocess.run([args.nutmeg, "--json"], check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    results.append(r)
                    print(
                        f"run {run + 1} nutmeg {r['set']}: P {r['precision']:.4f} R {r['recall']:.4f} "
                        f"F1 {r['f1']:.4f} | PC {r['pair_completeness']:.4f} | {r['pairs_compared']} pairs "
                        f"| {r['seconds']:.3f} s (CSV read apart: {r['load_seconds']:.3f} s; a second pass: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in r.get("stages", {}).items())
                        + ")",
                        file=sys.stderr,
                    )
        for tool, fn in peers.items():
            if args.only and tool != args.only:
                continue
            for set_name, dfs, truth in (("febrl4", [a, b], truth4), ("febrl3", [d], truth3)):
                r = measure(tool, set_name, fn(dfs), truth)
                results.append(r)
                stages = ", ".join(f"{k} {v:.3f}" for k, v in r["stages"].items())
                print(
                    f"run {run + 1} {tool} {set_name}: P {r['precision']:.4f} R {r['recall']:.4f} "
                    f"F1 {r['f1']:.4f} (pairwise F1 {r['pairwise']['f1']:.4f}) | PC {r['pair_completeness']:.4f} "
                    f"| {r['pairs_compared']} pairs | {r['seconds']:.3f} s ({stages})",
                    file=sys.stderr,
                )
    if args.json:
        args.json.write_text("\n".join(json.dumps(r) for r in results) + "\n")

    print()
    print(
        f"Splink u from {SPLINK_U_PAIRS:,.0f} random pairs; "
        f"recordlinkage {rl.__version__}, splink {splink.__version__}, duckdb {__import__('duckdb').__version__}, "
        f"pandas {pd.__version__}, numpy {__import__('numpy').__version__}, python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores"
    )
    print(table(results))


if __name__ == "__main__":
    main()
