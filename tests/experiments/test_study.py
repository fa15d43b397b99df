"""`synthdata study`: planning and shared-run keys, bad input, and a tiny study end to end that
is resumed without redoing finished cells."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from synthdata.core.contract import CheckpointError, ConfigError, DatasetError
from synthdata.core.folder_lock import folder_lock
from synthdata.core.recipe_loading import load_recipe
from synthdata.core.result_keys import result_tree
from synthdata.experiments.cells import drop_training_states
from synthdata.experiments.plan import cell_id
from synthdata.experiments.study import make_plan, run_study
from synthdata.experiments.study_keys import KEYS_FILE, SCHEMA, cell_fingerprint, cell_tree, digest
from synthdata.experiments.study_migration import migrate, older_fingerprints
from synthdata.metrics.layout_stats import NEAR_COPIES
from synthdata.study import main as study_main

STUDIES = Path(__file__).resolve().parents[2] / "recipes" / "studies"


def test_shared_runs_are_keyed_by_what_decides_them(tmp_path, plan_for):
    plan = plan_for(tmp_path, {
        "half": {"seg.synthetic_ratio": 0.5},
        "quarter": {"seg": {"synthetic_ratio": 0.25}},  # nested mappings are dotted keys too
        "real layouts": {"seg.synthetic_ratio": 0.5, "produce.layouts": "real"},
        "longer generators": {"seg.synthetic_ratio": 0.5, "train.steps": 4},
        "freemask": {"seg.synthetic_ratio": 0.5, "seg.synthetic_filter": "loss", "seg.filter_segmenter": "@baseline"},
        "more steps": {"seg.steps": 3},
    })
    assert list(plan.variants)[0] == "real only" and len(plan.cells) == 7 * 2
    by_user = {name: key for key, p in plan.productions.items() for name in p["used_by"]}
    assert by_user["half"] == by_user["quarter"] == by_user["freemask"]  # seg.* only: one production
    assert len({by_user["half"], by_user["real layouts"], by_user["longer generators"]}) == 3
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    assert gens["half"] == gens["quarter"] != gens["longer generators"]
    assert plan.generators[gens["real layouts"]]["stages"] == ["depth", "image"]  # no layout GAN needed
    assert plan.generators[gens["half"]]["stages"] == ["layout", "depth", "image"]
    jobs = {j.id: j for j in plan.jobs}
    # one job per stage (they train on real data only, so they run side by side); production needs all
    stage_jobs = [f"generators/{gens['half']}/{stage}" for stage in ("layout", "depth", "image")]
    assert all(jobs[j].deps == [] and len(jobs[j].commands) == 1 for j in stage_jobs)
    assert jobs[f"productions/{by_user['half']}"].deps == stage_jobs
    gdir = plan.run_dir / "generators" / gens["half"]  # a run finished when it was one job: all stages done
    gdir.mkdir(parents=True)
    (gdir / "done.json").write_text("{}")
    assert all(j.done() for j in plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}}).jobs
               if j.id.startswith(f"generators/{gens['half']}/"))
    freemask = jobs["cells/freemask/seed-1"]
    assert "cells/real-only/seed-1" in freemask.deps and f"productions/{by_user['freemask']}" in freemask.deps
    assert any("real-only/seed-1/checkpoints/segmenter/latest.pt" in t for t in freemask.commands[0])
    assert jobs["cells/more-steps/seed-0"].deps == [] and "seg.steps=3" in jobs["cells/more-steps/seed-0"].commands[0]
    # the same plan twice gives the same keys (they are hashes, not counters)
    assert set(plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}}).productions) == {by_user["half"]}



def test_a_budget_ladder_continues_the_longest_shorter_run(tmp_path, plan_for):
    """Variants that differ only in train.steps train one after another, each continuing the longest
    shorter run whose steps are a multiple of train.checkpoint_every (train.init_from)."""
    real = {"seg.synthetic_ratio": 0.5, "produce.layouts": "real"}
    plan = plan_for(tmp_path, {"2 steps": {**real, "train.steps": 2}, "3 steps": {**real, "train.steps": 3},
                               "4 steps": {**real, "train.steps": 4}, "6 steps": {**real, "train.steps": 6},
                               "6 steps, other width": {**real, "train.steps": 6, "stages.image.ngf": 4},
                               "minutes": {**real, "train.minutes": 1}})
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    jobs = {j.id: j for j in plan.jobs}

    def donor(name: str) -> str | None:
        job = jobs[f"generators/{gens[name]}/image"]
        given = [a.split("=", 1)[1].strip('"') for a in job.commands[0] if a.startswith("train.init_from=")]
        found = [n for n in gens if given == [str(plan.run_dir / "generators" / gens[n])]]
        assert job.deps == [f"generators/{gens[n]}/image" for n in found]
        return found[0] if found else None

    assert donor("2 steps") is None
    assert donor("3 steps") == "2 steps" and donor("4 steps") == "2 steps"  # 3 is not a multiple of 2
    assert donor("6 steps") == "4 steps"
    assert donor("6 steps, other width") is None and donor("minutes") is None
    assert jobs[f"generators/{gens['6 steps']}/depth"].deps == [f"generators/{gens['4 steps']}/depth"]


def test_a_continued_generator_run_reports_the_seconds_of_its_ladder(tmp_path, plan_for, finish_cells):
    from synthdata.experiments.study_report import summarize

    real = {"seg.synthetic_ratio": 0.5, "produce.layouts": "real"}
    plan = plan_for(tmp_path, {"2 steps": {**real, "train.steps": 2}, "4 steps": {**real, "train.steps": 4},
                               "6 steps": {**real, "train.steps": 6}})
    finish_cells(plan)  # every job 1 s: a run of two stages 2 s
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    seconds = summarize(plan)["run_seconds"]
    assert [seconds[f"generators/{gens[n]}"] for n in ("2 steps", "4 steps", "6 steps")] == [2.0, 4.0, 6.0]
    recipe = dataclasses.replace(plan.recipe, study=dataclasses.replace(plan.recipe.study, report_only=True))
    run_study(recipe, plan.run_dir)
    report = (plan.run_dir / "study" / "report.md").read_text()
    assert f"| generators/{gens['6 steps']} | 6 steps | 6 (with generators/{gens['4 steps']}, which it continued) |" in report
    assert f"| generators/{gens['2 steps']} | 2 steps | 2 |" in report


def test_a_harmonised_variant_trains_its_own_image_stage(tmp_path, plan_for):
    composite = {"seg.synthetic_ratio": 0.5, "produce.layouts": "real", "stages.image.arch": "composite"}
    plan = plan_for(tmp_path, {"composite": composite,
                               "harmonised": {**composite, "stages.image.harmonise": "pix2pix"}})
    gens = {name: key for key, g in plan.generators.items() for name in g["used_by"]}
    assert gens["composite"] != gens["harmonised"]  # the bank-only run is not reused for the harmoniser
    assert plan.generators[gens["harmonised"]]["stages"] == ["image"]  # real layouts, depth from the bank
    train = next(j for j in plan.jobs if j.id == f"generators/{gens['harmonised']}/image").commands[0]
    assert 'stages.image.harmonise="pix2pix"' in train and any(a.startswith("stage=") and "image" in a for a in train)


@pytest.mark.parametrize("name", sorted(p.stem for p in STUDIES.glob("*.yaml")))
def test_every_shipped_study_file_plans(tmp_path, request, name):
    """Each file in recipes/studies names keys the recipe has (a typo would stop the study)."""
    recipe_name = {"camvid": "camvid", "particles": "particles"}.get(name.split("-")[0], "toy")
    extra = []
    if recipe_name != "toy":
        root = request.getfixturevalue("shared_datasets") / recipe_name  # skips when absent
        extra = [f"data.root={root}", "data.subset=0.1"]
    plan = make_plan(load_recipe(recipe_name, [f"study.variants={name}", *extra]), tmp_path / "run")
    assert len(plan.variants) >= 2 and plan.cells


def test_real_only_cells_do_not_depend_on_generator_settings(tmp_path, plan_for):
    """A study that adds variants with other generator settings reuses its finished baseline cells;
    synthetic cells, and any segmenter setting, still change the fingerprint."""
    variants = {"half": {"seg.synthetic_ratio": 0.5}}

    def fingerprints(*extra: str) -> dict[str, str]:
        plan = plan_for(tmp_path, variants, *extra)
        return {cell_id(c): cell_fingerprint(c, plan.resolved[c.variant]) for c in plan.cells}

    base = fingerprints()
    other_generators = fingerprints("train.steps=3", "stages.image.ngf=4", "produce.num_samples=4")
    other_segmenter = fingerprints("seg.lr=0.5")
    for seed in (0, 1):
        real, half = f"cells/real-only/seed-{seed}", f"cells/half/seed-{seed}"
        assert other_generators[real] == base[real] and other_generators[half] != base[half]
        assert other_segmenter[real] != base[real]
    assert base["cells/real-only/seed-0"] != base["cells/real-only/seed-1"]
    # a baseline cell finished before generator sections were left out recorded the whole recipe's:
    # the upgrade to schema 2 recognises it, for this recipe only
    plan = plan_for(tmp_path, variants, "train.steps=3")
    cell = next(c for c in plan.cells if c.production is None)
    recipe = plan.resolved[cell.variant]
    whole = digest(cell_tree(cell, recipe))
    assert whole != cell_fingerprint(cell, recipe) and whole in older_fingerprints(cell, recipe)
    other = plan_for(tmp_path, variants).resolved[cell.variant]
    assert digest(cell_tree(cell, other)) not in older_fingerprints(cell, recipe)

@pytest.mark.parametrize("variants, extra, error, words", [
    ({"typo": {"seg.synthetic_ratoi": 0.5}}, [], ConfigError, ["typo", "seg.synthetic_ratoi", "synthetic_ratio"]),
    ({"res": {"data.height": 64}}, [], ConfigError, ["res", "data.height"]),
    ({"gone": {"seg.synthetic_ratio": 0.5, "seg.synthetic": "/no/such/shards"}}, [], DatasetError,
     ["gone", "seg.synthetic", "/no/such/shards"]),
    ({"sched": {"seg.synthetic_ratio": 0.5, "seg.synthetic_schedule": "pretrain"}}, [], ConfigError,
     ["sched", "pretrain_steps"]),
    ({"gen": {"train.steps": 5}}, [], ConfigError, ["gen", "mixes no synthetic"]),
    ({"ok": {"seg.synthetic_ratio": 0.5}}, ["data.subset=IDS"], DatasetError, ["toy-train-000099"]),
    # refine.* variants (SegGAN after training) and train.shards under a subset
    ({"seggan": {"refine.stpes": 2}}, [], ConfigError, ["seggan", "refine.stpes", "refine.steps"]),
    ({"seggan": {"refine.steps": 2, "refine.segmenter": "/x.pt"}}, [], ConfigError, ["seggan", "refine.segmenter"]),
    ({"seggan": {"refine.steps": 0}}, [], ConfigError, ["seggan", "refine.steps must be >= 1"]),
    ({"seggan": {"refine.steps": 2, "refine.generator": "/no/such/image.pt"}}, [], CheckpointError,
     ["seggan", "refine.generator", "/no/such/image.pt"]),
    ({"both": {"seg.synthetic_ratio": 0.5, "refine.steps": 2}}, [], ConfigError,
     ["both", "stages.image.use_depth: false"]),
    ({"seggan": {"refine.steps": 2, "produce.layouts": "real"}}, [], ConfigError, ["seggan", "mixes no synthetic"]),
    ({"seggan": {"refine.steps": 2, "stages.image.arch": "composite"}}, [], ConfigError,
     ["seggan", 'stages.image.arch: "spade"']),
    ({"shards": {"seg.synthetic_ratio": 0.5, "train.shards": "/some/shards"}}, ["data.subset=every:2"], ConfigError,
     ["shards", "train.shards", "data.subset"]),
    # issue 34: a variant named '..' wrote its cells to RUN_DIR/seed-N
    ({"..": {"seg.synthetic_ratio": 0.5}}, [], ConfigError, ["..", "need a letter or digit"]),
])
def test_bad_input_stops_before_any_training(tmp_path, capsys, variants, extra, error, words,
                                             study_tiny, plan_for, write_variants):
    ids = tmp_path / "ids.txt"
    ids.write_text("toy-train-000001\ntoy-train-000099\n")
    extra = [e.replace("IDS", str(ids)) for e in extra]
    with pytest.raises(error) as info:
        plan_for(tmp_path, variants, *extra)
    for word in words:
        assert word in str(info.value)
    args = ["recipe=toy", *study_tiny, f"study.variants={write_variants(tmp_path, variants)}", *extra,
            f"run_dir={tmp_path / 'run'}"]
    assert study_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words[0] in err
    assert not (tmp_path / "run").exists()


def test_tiny_study_end_to_end_resumes_without_redoing_cells(tmp_path, capsys, study_tiny, write_variants):
    variants = write_variants(tmp_path, {"synthetic": {"seg.synthetic_ratio": 0.5},
                                         "decay": {"seg.synthetic_ratio": 0.5, "seg.synthetic_schedule": "decay"}})
    run_dir = tmp_path / "run"
    args = ["recipe=toy", *study_tiny, f"study.variants={variants}", f"run_dir={run_dir}", "study.workers=1"]
    assert study_main(args) == 0  # one worker: the jobs run in this process
    out = capsys.readouterr().out
    plan = json.loads((run_dir / "study" / "plan.json").read_text())
    assert len(plan["generators"]) == 1 and len(plan["productions"]) == 1  # shared by both variants
    (production,) = plan["productions"].values()
    assert production["used_by"] == ["synthetic", "decay"]
    cells = sorted(run_dir.glob("cells/*/seed-*/result.json"))
    assert len(cells) == 6
    results = {(r["variant"], r["seed"]): r for r in (json.loads(p.read_text()) for p in cells)}
    assert results[("decay", 1)]["source_counts"] == {"real": 6, "synthetic": 2}  # decay 0.5 over 2 steps: [2, 0]
    assert results[("real only", 0)]["source_counts"] == {"real": 8}
    assert len(results[("synthetic", 0)]["per_image"]) == 4  # every evaluation image, for the bootstrap
    # finished cells keep their segmenter's latest.pt, not the state to resume its training
    assert all((c.parent / "checkpoints" / "segmenter" / "latest.pt").is_file() for c in cells)
    assert not list(run_dir.glob("cells/*/seed-*/checkpoints/*/state*"))
    assert not list(run_dir.glob("cells/*/seed-*/checkpoints/*/previous.pt"))
    report = (run_dir / "study" / "report.md").read_text()
    assert "## Verdicts" in report and "t-interval over seeds" in report
    for name in ("synthetic", "decay"):
        assert f"- {name}: " in report and f"  {name}: " in out
    data = json.loads((run_dir / "study" / "report.json").read_text())
    rows = {r["variant"]: r for r in data["summary"]["rows"]}
    diffs = [results[("synthetic", s)]["miou"] - results[("real only", s)]["miou"] for s in (0, 1)]
    assert rows["synthetic"]["t_interval"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert rows["synthetic"]["bootstrap"]["n"] == 4 and rows["synthetic"]["verdict_interval"] == "t over seeds"
    # per class: the baseline's IoU and each variant's paired difference with its interval over seeds
    assert "## Per-class IoU" in report and "| class | real only | synthetic | decay |" in report
    for c, name in enumerate(data["summary"]["classes"]):
        per_seed = [results[("synthetic", s)]["per_class_iou"][c] - results[("real only", s)]["per_class_iou"][c]
                    for s in (0, 1) if results[("synthetic", s)]["per_class_iou"][c] is not None
                    and results[("real only", s)]["per_class_iou"][c] is not None]
        iv = rows["synthetic"]["per_class_t_interval"][c]
        assert (iv is None) == (not per_seed)
        if per_seed:
            assert iv["mean"] == pytest.approx(sum(per_seed) / len(per_seed)) and iv["n"] == len(per_seed)
            assert f"| {name} | " in report
    # the two variants against each other, the later minus the earlier, paired by seed
    (pair,) = data["summary"]["between"]
    assert (pair["variant"], pair["control"], pair["paired_seeds"]) == ("decay", "synthetic", [0, 1])
    between = [results[("decay", s)]["miou"] - results[("synthetic", s)]["miou"] for s in (0, 1)]
    assert pair["t_interval"]["mean"] == pytest.approx(sum(between) / 2) and pair["bootstrap"]["n"] == 4
    assert "## Between variants" in report and f"| decay | synthetic | 2 | {100 * sum(between) / 2:+.1f} [" in report
    for picture in ("miou.png", "differences.png", "per_class_difference.png"):
        assert (run_dir / "study" / picture).is_file() and f"]({picture})" in report
    # the production's layouts against the real ones (random-weight generators: anything may be flagged)
    (key,) = plan["productions"]
    check = data["summary"]["layout_checks"][key]
    assert check["produced"]["num_images"] == 8 and "## Produced layouts vs real" in report
    assert f"| {key} | synthetic, decay | {check['summary']['components_per_image_real']:.1f} / " in report
    flagged = sum(not w.startswith(NEAR_COPIES) for w in check["warnings"])  # class flags; near copies apart
    assert (f"its layouts lose, merge or misplace {flagged} classes" in rows["synthetic"]["verdict_line"]) == (flagged > 0)
    assert ("near copies of each other" in rows["synthetic"]["verdict_line"]) == (len(check["warnings"]) > flagged)
    (run_dir / "productions" / key / "shards" / "layout_check.json").unlink()  # a production from before the check
    run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.report_only=true"]), run_dir)
    assert json.loads((run_dir / "productions" / key / "shards" / "layout_check.json").read_text()) == check
    assert "study: ran 10 jobs, 0 already done, 0 failed" in out  # 3 generator stages, 1 production, 6 cells
    gdir = run_dir / "generators" / next(iter(plan["generators"]))
    assert json.loads((gdir / "done.json").read_text())["seconds"] == pytest.approx(sum(
        json.loads((gdir / f"done-{stage}.json").read_text())["seconds"] for stage in ("layout", "depth", "image")), abs=0.05)

    # a kill loses the cell in progress: drop one result; a rerun runs that cell only (in a
    # worker process: two workers)
    victim = run_dir / "cells" / "synthetic" / "seed-1" / "result.json"
    victim.unlink()
    partial = run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.report_only=true"]), run_dir)
    assert partial["ran"] == [] and len(partial["skipped"]) == 9
    assert "Not finished (failed or not run yet): synthetic seed 1" in (run_dir / "study" / "report.md").read_text()
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("**/result.json")}
    before.update({p: p.stat().st_mtime_ns for p in run_dir.glob("*/*/done*.json")})
    old_state = run_dir / "cells" / "decay" / "seed-0" / "checkpoints" / "segmenter" / "state.previous"
    old_state.mkdir()  # a cell finished by a version that kept its training states: dropped on the next run
    (old_state.parent / "previous.pt").write_bytes(b"")
    summary = run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}"]), run_dir)
    assert summary["ran"] == ["cells/synthetic/seed-1"] and summary["failed"] == {}
    assert not old_state.exists() and not (old_state.parent / "previous.pt").exists()
    assert len(summary["skipped"]) == 9
    assert victim.is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    # a finished cell is not silently reused under another recipe
    with pytest.raises(ConfigError, match="another recipe"):
        run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "seg.lr=0.5"]), run_dir)

    # every cell records its machine; a run dir resumed on another machine is flagged, since the
    # same seed trains another segmenter on another CPU
    from synthdata.core.runtime import machine_description
    assert all(json.loads(p.read_text())["machine"] == machine_description() for p in cells)
    assert "ran on" not in (run_dir / "study" / "report.md").read_text()
    other = run_dir / "cells" / "decay" / "seed-1" / "result.json"
    result = json.loads(other.read_text())
    result["machine"] = {"cpu": "Another CPU", "cpu_capability": "AVX2", "device": "cpu"}
    other.write_text(json.dumps(result))
    flagged = run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.report_only=true"]), run_dir)
    assert "**Warning: the cells ran on 2 machines**" in (run_dir / "study" / "report.md").read_text()
    assert "Another CPU (AVX2, cpu)" in flagged["verdicts"][-1]
    # a cell from before label maps were aligned with their images (no filters recorded) is flagged too
    assert json.loads(other.read_text())["resize_filters"]["labels"] == "nearest-exact"
    result = json.loads(other.read_text())
    result["machine"] = json.loads((run_dir / "cells" / "decay" / "seed-0" / "result.json").read_text())["machine"]
    del result["resize_filters"]
    other.write_text(json.dumps(result))
    flagged = run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.report_only=true"]), run_dir)
    assert "label maps were resized with 2 filters** (nearest, nearest-exact)" in flagged["verdicts"][-1]
    assert "ran on" not in (run_dir / "study" / "report.md").read_text()
    result["resize_filters"] = {"labels": "nearest-exact"}
    other.write_text(json.dumps(result))
    # a list of seeds reports only those seeds' cells (a replication's new seeds alone)
    run_study(load_recipe("toy", study_tiny + [f"study.variants={variants}", "study.report_only=true",
                                               "study.seeds=[1]"]), run_dir)
    one = json.loads((run_dir / "study" / "report.json").read_text())
    assert one["seeds"] == [1] and all(r["seeds"] == [1] for r in one["summary"]["rows"])
    assert one["summary"]["rows"][1]["t_interval"]["mean"] == pytest.approx(diffs[1])


def test_run_keys_survive_new_recipe_keys_and_ignore_the_cache_size():
    """A study made before a recipe key existed must still resume after it: the toy recipe's tree
    of what results depend on hashes as it did before `data.cache_mb` and
    `stages.image.harmonise_input` existed. If this fails after you added a recipe key, list it in
    `core.result_keys.NOT_RESULTS` (it never changes a result) or `core.result_keys.ADDED_DEFAULTS` (its default is the
    behaviour from before it existed); change the pinned value only if results really change."""
    assert digest(result_tree(load_recipe("toy"))) == "a59869bde376"
    assert digest(result_tree(load_recipe("toy", ["data.cache_mb=0"]))) == "a59869bde376"
    perturbed = load_recipe("toy", ["stages.image.harmonise_input=perturbed"])
    assert result_tree(perturbed)["stages"]["image"]["harmonise_input"] == "perturbed"
    assert digest(result_tree(perturbed)) != "a59869bde376"


def test_a_study_from_before_stages_image_harmonise_existed_is_upgraded_once(tmp_path, plan_for):
    """`stages.image.harmonise` was added after studies existed and before run keys left new keys
    out (`core.result_keys.ADDED_UNLISTED`): the upgrade to schema 2 finds such a study's generator
    and production runs under their old keys (recorded in study/keys.json, no folder moved) and
    records its cells' fingerprints (the recipe tree without the key) again; later plans read the
    folders from keys.json alone."""
    variants = {"half": {"seg.synthetic_ratio": 0.5}}
    plan = plan_for(tmp_path, variants)
    recipe = plan.resolved["half"]
    (new_g,), (new_p,) = plan.generators, plan.productions

    def legacy(tree: dict) -> dict:
        del tree["stages"]["image"]["harmonise"]
        return tree
    old_g = digest({"seed": recipe.seed, "data": result_tree(recipe)["data"],
                    "stages": legacy(result_tree(recipe))["stages"], "train": result_tree(recipe)["train"],
                    "trained": plan.generators[new_g]["stages"], "subset_ids": None})
    old_p = digest({"generators": old_g, "produce": result_tree(recipe)["produce"]})
    assert old_g != new_g and old_p != new_p
    for run in (f"generators/{old_g}", f"productions/{old_p}"):
        (plan.run_dir / run).mkdir(parents=True)
    # a cell the old code finished: the whole recipe at its seed without the key, its shards' absolute path
    tree = legacy(result_tree(dataclasses.replace(recipe, seed=0)))
    tree["study"] = None
    tree["seg"]["synthetic"] = str(plan.run_dir / "productions" / old_p / "shards")
    cell = next(c for c in plan.cells if c.variant == "half" and c.seed == 0)
    cell.result_path.parent.mkdir(parents=True)
    cell.result_path.write_text(json.dumps({"variant": "half", "seed": 0, "fingerprint": digest(tree), "miou": 0.5}))

    plan = migrate(plan_for(tmp_path, variants), lambda runs: make_plan(plan.recipe, plan.run_dir, runs=runs))
    assert set(plan.generators) == {old_g} and set(plan.productions) == {old_p}
    cell = next(c for c in plan.cells if c.variant == "half" and c.seed == 0)
    assert cell.overrides["seg.synthetic"] == str(plan.run_dir / "productions" / old_p / "shards")
    result = json.loads(cell.result_path.read_text())
    assert result["fingerprint"] == cell_fingerprint(cell, plan.resolved["half"]) != digest(tree)
    assert result["migrated"] == {"from_schema": 1, "fingerprint": digest(tree)} and result["miou"] == 0.5
    assert result["schema"] == SCHEMA
    keys = json.loads((plan.run_dir / KEYS_FILE).read_text())
    assert keys["schema"] == SCHEMA and keys["runs"] == {f"generators/{new_g}": old_g, f"productions/{new_p}": old_p}
    assert keys["upgrades"][-1]["cells"] == 1 and keys["upgrades"][-1]["runs"] == 2
    again = plan_for(tmp_path, variants)  # from keys.json, with no probing of older keys
    assert set(again.generators) == {old_g} and set(again.productions) == {old_p}
    assert migrate(again, lambda runs: make_plan(plan.recipe, plan.run_dir, runs=runs)).runs == keys["runs"]
    assert json.loads((plan.run_dir / KEYS_FILE).read_text()) == keys  # nothing left to upgrade: unchanged


def test_a_production_follows_its_generators_older_key_even_when_its_folder_is_gone(tmp_path, plan_for):
    """The older code keyed a production by the folder its generator was found in; a study whose
    production folder was deleted after its cells finished must find the cells' shards path again."""
    variants = {"half": {"seg.synthetic_ratio": 0.5}}
    plan = plan_for(tmp_path, variants)
    recipe = plan.resolved["half"]
    (new_g,) = plan.generators
    tree = result_tree(recipe, before_unlisted=True)
    old_g = digest({"seed": recipe.seed, "data": tree["data"], "stages": tree["stages"], "train": tree["train"],
                    "trained": plan.generators[new_g]["stages"], "subset_ids": None})
    (plan.run_dir / "generators" / old_g).mkdir(parents=True)  # no production folder at all
    plan = migrate(plan_for(tmp_path, variants), lambda runs: make_plan(plan.recipe, plan.run_dir, runs=runs))
    old_p = digest({"generators": old_g, "produce": result_tree(recipe)["produce"]})
    assert set(plan.generators) == {old_g} and set(plan.productions) == {old_p}


def test_an_upgrade_of_some_variants_leaves_the_others_to_the_plan_that_names_them(tmp_path, plan_for):
    """`study.only` upgrades the cells it plans; a later plan of the whole file upgrades the rest
    (each result of this schema says so and is not looked at again)."""
    variants = {"half": {"seg.synthetic_ratio": 0.5}, "quarter": {"seg.synthetic_ratio": 0.25}}
    whole = plan_for(tmp_path, variants)
    older = {}
    for cell in whole.cells:
        tree = cell_tree(cell, whole.resolved[cell.variant], synthetic=cell.overrides.get("seg.synthetic"))
        older[cell_id(cell)] = digest(tree)  # the shards' absolute path: schema 1
        cell.result_path.parent.mkdir(parents=True)
        cell.result_path.write_text(json.dumps({"variant": cell.variant, "seed": cell.seed, "miou": 0.5,
                                                "fingerprint": older[cell_id(cell)]}))

    def upgrade(*extra):
        plan = plan_for(tmp_path, variants, *extra)
        return migrate(plan, lambda runs: make_plan(plan.recipe, plan.run_dir, runs=runs))

    def fingerprint(cell):
        return json.loads(cell.result_path.read_text())["fingerprint"]

    part = upgrade("study.only=[half]")
    assert all(fingerprint(c) == cell_fingerprint(c, part.resolved[c.variant]) for c in part.cells)
    quarter = [c for c in whole.cells if c.variant == "quarter"]
    assert all(fingerprint(c) == older[cell_id(c)] for c in quarter)  # not planned: not touched yet
    upgrade()
    assert all(fingerprint(c) == cell_fingerprint(c, whole.resolved[c.variant]) for c in whole.cells)


def test_a_run_dir_whose_keys_file_is_newer_or_unreadable_is_refused_with_one_line(tmp_path, plan_for):
    (tmp_path / "study-run" / "study").mkdir(parents=True)
    (tmp_path / "study-run" / KEYS_FILE).write_text(json.dumps({"schema": SCHEMA + 1, "runs": {}}))
    with pytest.raises(ConfigError, match=r"keys.json: schema 3 was written by a newer synthdata"):
        plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})
    (tmp_path / "study-run" / KEYS_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match=r"keys.json: not a study keys file .*use a new run_dir"):
        plan_for(tmp_path, {"half": {"seg.synthetic_ratio": 0.5}})


def test_study_only_runs_a_subset_of_the_variants_under_the_same_keys(tmp_path, plan_for):
    variants = {"half": {"seg.synthetic_ratio": 0.5}, "quarter": {"seg.synthetic_ratio": 0.25},
                "real layouts": {"seg.synthetic_ratio": 0.5, "produce.layouts": "real"}}
    whole = plan_for(tmp_path, variants)
    part = plan_for(tmp_path, variants, "study.only=[quarter]")
    assert list(part.variants) == ["real only", "quarter"]
    fingerprint = {cell_id(c): cell_fingerprint(c, whole.resolved[c.variant]) for c in whole.cells}
    assert {cell_id(c): cell_fingerprint(c, part.resolved[c.variant]) for c in part.cells} == {
        k: v for k, v in fingerprint.items() if k.startswith(("cells/real-only/", "cells/quarter/"))}
    assert set(part.productions) < set(whole.productions)
    with pytest.raises(ConfigError, match=r"study.only: no variant named \['halve'\]; the variants are"):
        plan_for(tmp_path, variants, "study.only=[halve]")


def test_study_seeds_as_a_list_plans_exactly_those_cells_under_the_same_keys(tmp_path, plan_for):
    variants = {"half": {"seg.synthetic_ratio": 0.5}}
    whole = plan_for(tmp_path, variants, "study.seeds=4")
    replication = plan_for(tmp_path, variants, "study.seeds=[2, 3]")
    assert whole.seeds == [0, 1, 2, 3] and replication.seeds == [2, 3]
    fingerprint = {cell_id(c): cell_fingerprint(c, whole.resolved[c.variant]) for c in whole.cells}
    assert {cell_id(c): cell_fingerprint(c, replication.resolved[c.variant]) for c in replication.cells} == {
        k: v for k, v in fingerprint.items() if k.endswith(("/seed-2", "/seed-3"))}
    assert replication.productions.keys() == whole.productions.keys()  # the seeds vary the segmenter only
    for bad in ("[]", "[1, 1]", "[-1]", "0"):
        with pytest.raises(ConfigError, match="study.seeds"):
            plan_for(tmp_path, variants, f"study.seeds={bad}")


def test_a_second_study_in_a_run_dir_is_refused_while_one_runs_there(tmp_path, capsys, study_tiny, write_variants,
                                                                      lock_holder):
    run_dir = tmp_path / "run"
    args = ["recipe=toy", *study_tiny, f"study.variants={write_variants(tmp_path, {'half': {'seg.synthetic_ratio': 0.5}})}",
            f"run_dir={run_dir}", "study.workers=1"]
    with lock_holder(run_dir / "study") as pid:
        assert study_main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert f"{run_dir / 'study'}: another synthdata study is already running here (pid {pid}, started " in err
        assert not (run_dir / "study" / "plan.json").exists() and not (run_dir / "cells").exists()
        assert study_main(args + ["study.report_only=true"]) == 0  # a report runs nothing: allowed meanwhile
        assert "Not finished (failed or not run yet): real only seed 0" in (run_dir / "study" / "report.md").read_text()
    with folder_lock(run_dir / "study", "a study"):  # the kernel dropped the killed holder's lock: none is stale
        pass


def test_finished_cell_cleanup_keeps_what_a_link_in_the_cell_points_to(tmp_path):
    """Issue 34: `ln -s $PWD/victim RUN/cells/real-only/seed-0/checkpoints/photos`; a rerun of the
    finished study deleted victim/state-keep/ and victim/previous.pt."""
    victim, cell = tmp_path / "victim", tmp_path / "run" / "cells" / "real-only" / "seed-0"
    (victim / "state-keep").mkdir(parents=True)
    (victim / "state-keep" / "photo.png").write_bytes(b"keep")
    (victim / "previous.pt").write_bytes(b"keep")
    segmenter = cell / "checkpoints" / "segmenter"
    for name in ("state", "state.previous"):
        (segmenter / name).mkdir(parents=True)
        (segmenter / name / "model.safetensors").write_bytes(b"w")
    (segmenter / "latest.pt").write_bytes(b"w")
    (segmenter / "previous.pt").write_bytes(b"w")
    (cell / "checkpoints" / "photos").symlink_to(victim)
    (segmenter / "state.old").symlink_to(victim / "state-keep")
    drop_training_states(cell)
    assert (victim / "state-keep" / "photo.png").read_bytes() == b"keep"
    assert (victim / "previous.pt").read_bytes() == b"keep"
    assert (cell / "checkpoints" / "photos").is_symlink()
    assert sorted(p.name for p in segmenter.iterdir()) == ["latest.pt"]  # the states went, a link as a link


def test_default_study_plans_every_source_with_auto_classes(tmp_path):
    """`study.variants=default`: real only, real pixels x3 / x6 / x6 online, hybrid and GAN + SPADE 0.1, with
    classes chosen by `auto`; only the two GAN variants train generators."""
    plan = make_plan(load_recipe("toy", ["study.variants=default"]), tmp_path / "run")
    assert list(plan.variants) == ["real only", "real pixels x3 composite 0.5", "real pixels x6 composite 0.5",
                                   "real pixels x6 online", "hybrid classes x6 composite 0.5", "gan spade 0.1"]
    layout_jobs = [j for j in plan.jobs if j.id.startswith("generators/") and j.id.endswith("/layout")]
    assert len(layout_jobs) == 2  # generator runs are keyed by all their stages: the image stages differ
    assert all(plan.resolved[v].produce.copy_paste_classes == "auto" for v in list(plan.variants)[1:5])
    assert plan.resolved["real pixels x6 online"].seg.online_copy_paste == 6
    hybrid = plan.resolved["hybrid classes x6 composite 0.5"].stages.layout
    assert hybrid.class_conditioning and hybrid.presence_weight == 10  # the hybrid that stopped hurting
    assert not plan.resolved["gan spade 0.1"].stages.layout.class_conditioning
    assert len(plan.productions) == 4  # x3, x6, hybrid, GAN: the online variant produces nothing


def test_an_online_copy_paste_variant_trains_no_generator_and_its_paste_options_count(tmp_path, plan_for):
    """seg.online_copy_paste in a variant: a segmenter cell with no generator or production job,
    which may set the pastes' produce.copy_paste_* options; those options are part of its
    fingerprint (another class list is another cell), while the baseline's is unchanged."""

    def plan(classes):
        return plan_for(tmp_path, {"online": {"seg.online_copy_paste": 3, "produce.copy_paste_classes": classes}})

    first, other = plan(["car"]), plan(["car", "person"])
    assert not first.generators and not first.productions
    a, b = ({c.variant: cell_fingerprint(c, p.resolved[c.variant]) for c in p.cells if c.seed == 0}
            for p in (first, other))
    assert a["online"] != b["online"] and a["real only"] == b["real only"]
    with pytest.raises(ConfigError, match="mixes no synthetic"):  # without online copy-paste: refused as before
        plan_for(tmp_path, {"offline": {"produce.copy_paste_classes": ["car"]}})


def test_stop_after_productions_makes_them_and_trains_no_cell(tmp_path, capsys, study_tiny, write_variants):
    variants = write_variants(tmp_path, {"flat": {"seg.synthetic_ratio": 0.5, "produce.layouts": "real",
                                                  "stages.image.arch": "flat"}})
    run_dir = tmp_path / "run"
    args = ["recipe=toy", *study_tiny, f"study.variants={variants}", "study.workers=1", f"run_dir={run_dir}"]
    assert study_main(args + ["study.stop_after=productions"]) == 0
    out = capsys.readouterr().out
    (production,) = (run_dir / "productions").iterdir()
    assert (production / "done.json").is_file() and len(list((production / "shards").glob("*.tar"))) == 2
    assert not list(run_dir.glob("cells/*/*/result.json"))
    assert "stopped before the cells (study.stop_after=productions)" in out and str(production / "shards") in out
    assert "study: ran 2 jobs, 0 already done, 0 failed" in out  # the flat stage (its colours) and the production
