"""What scripts/mutate.py mutates, with which tests, and where: the configuration as data.

The packages staged at their import names, every money-path module with its test selection
(MODULES), the functions mutated in a large module (SCOPE), the CI gate's sample and budget
(QUICK_*), the work folders and the goal, and the report's free-text notes (NOTES). A row's
tests or scope change here; how a run is staged and judged does not.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_ROOT = REPO / "var" / "mutate"
QUICK_STAGE_ROOT = STAGE_ROOT / "quick"  # the CI sample's stages, apart from the recorded runs'
REPORT = REPO / "docs" / "mutation-report.md"
GOAL = 90.0  # percent: killed / (killed + survived + no tests + timeouts + suspicious)

# repository folder -> import name (pyproject's [tool.setuptools] package-dir)
PACKAGES = {
    "shared": "shared",
    "services/execution": "execution",
    "services/inference": "inference",
}

# module (repo path) -> the unit tests that exercise it (kept to what kills its mutants)
# every in-process test of inference's service (tests/inference_harness.py), shared by the
# rows of service.py and of the receive batch moved out of it (inference/batching.py)
INFERENCE_IN_PROCESS_TESTS = (
    "tests/unit/test_inference_service.py",
    "tests/unit/test_inference_batching.py",
    "tests/unit/test_inference_epoch.py",
    "tests/unit/test_shadow_inference.py",
    "tests/unit/test_inference_hot_path.py",
    "tests/unit/test_feature_swap.py",
)

# the feature pipeline and the modules moved out of it (feature_config.py, normaliser.py)
FEATURE_TESTS = [
    "tests/unit/test_features.py",
    "tests/unit/test_mutation_kills_features.py",
    "tests/unit/test_mutation_kills_features_edges.py",
    # the optional regime block's hooks (names, warm-up, batch and online columns)
    "tests/unit/test_regime_features.py",
]

MODULES: dict[str, list[str]] = {
    "shared/costs.py": ["tests/unit/test_costs.py", "tests/unit/test_mutation_kills_costs.py"],
    "shared/accounting.py": [
        "tests/unit/test_accounting.py",
        "tests/unit/test_mutation_kills_accounting.py",
    ],
    "services/execution/risk.py": [
        "tests/unit/test_risk.py",
        "tests/unit/test_execution_oracle.py",
        "tests/unit/test_mutation_kills_risk.py",
    ],
    "services/execution/decision.py": [
        "tests/unit/test_execution_decision.py",
        "tests/unit/test_mutation_kills_decision.py",
    ],
    "services/execution/order_journal.py": [
        "tests/unit/test_execution_journal.py",
        "tests/unit/test_execution_hardening.py",
        "tests/unit/test_execution_safety.py",
        "tests/unit/test_execution_baseline.py",
        # not test_execution_journal_fastpath.py: its config tests read the untracked
        # paper_trading/paper_trading_config.json, which a stage does not have; the fast path
        # (0784737) is killed by hand in test_mutation_kills_order_journal.py
        "tests/unit/test_mutation_kills_order_journal.py",
    ],
    "shared/backtest.py": [
        "tests/unit/test_backtest.py",
        "tests/unit/test_sizing_parity_decision.py",
        "tests/unit/test_mutation_kills_backtest.py",
    ],
    # the one-bar accounting core moved out of shared/backtest.py unchanged: the backtest's own
    # selection (its kill tests reach these functions through run_backtest and directly)
    "shared/rebalancing.py": [
        "tests/unit/test_backtest.py",
        "tests/unit/test_sizing_parity_decision.py",
        "tests/unit/test_mutation_kills_backtest.py",
    ],
    # execution's ATR stop and daily-loss halt as the backtester applies them (validation,
    # the promotion gate and the hold-out score a model under them); not the export test
    # (it trains a policy first: 7 s a run)
    "shared/backtest_risk.py": [
        "tests/unit/test_backtest_risk_rules.py",
        "tests/unit/test_evaluate_risk_rules.py",
        "tests/unit/test_mutation_kills_backtest.py",
        "tests/unit/test_mutation_kills_backtest_risk.py",
    ],
    # the rule arithmetic the env and the backtester share: RiskState (stop, daily-loss
    # baseline and halt), stop_level(s), stop_triggered, day_ids; not the export test (it
    # trains a policy first)
    "shared/env_risk.py": [
        "tests/unit/test_env_risk_rules.py",
        "tests/unit/test_backtest_risk_rules.py",
        "tests/unit/test_mutation_kills_backtest_risk.py",
        "tests/unit/test_mutation_kills_env_risk.py",
    ],
    # THE sizing rule (execution trades with it; env, backtest and evaluation call it): the
    # independent-oracle contract, the decision parity, execution's risk/decision tests that
    # size through it; not test_env.py / test_backtest.py (slow, and they reach it only
    # through the env and backtest rows)
    "shared/sizing.py": [
        "tests/unit/test_sizing_contract.py",
        "tests/unit/test_sizing_parity_decision.py",
        "tests/unit/test_risk.py",
        "tests/unit/test_execution_decision.py",
        "tests/unit/test_mutation_kills_sizing.py",
    ],
    "shared/features.py": FEATURE_TESTS,
    # the config, names, warm-up and fingerprint, and the normaliser, moved out of features.py
    # unchanged: the feature pipeline's selection
    "shared/feature_config.py": FEATURE_TESTS,
    "shared/normaliser.py": FEATURE_TESTS,
    # inference's decision core (LoadedModel) and the artifact loading around it, moved out of
    # shared/manifest.py unchanged (the manifest's schema is not a row: no SCOPE function)
    "shared/loaded_model.py": [
        "tests/unit/test_manifest.py",
        "tests/unit/test_mutation_kills_loaded_model.py",
    ],
    # the regime-gated cap LoadedModel applies (cap_for, gate_target, check_caps, RegimeGate);
    # not test_regime_caps_export.py (it trains and exports a policy first: 5 s a run)
    "shared/regime_gate.py": [
        "tests/unit/test_regime_gate.py",
        "tests/unit/test_mutation_kills_loaded_model.py",
        "tests/unit/test_mutation_kills_regime_gate.py",
    ],
    # every in-process test of the service (tests/inference_harness.py), not the stateful
    # serving tests (their decisions live in inference/recurrent.py; each exports a torch
    # policy first) nor the subprocess/bus tiers; files not (yet) in the tree are left out
    "services/inference/service.py": [
        *INFERENCE_IN_PROCESS_TESTS,
        "tests/unit/test_mutation_kills_inference.py",
    ],
    # the receive batch moved out of service.py (one numpy feature pass, one ONNX call, the
    # row-by-row fallbacks): the same in-process tests of the service (tests/inference_harness.py)
    # and the self-fence's (handle_batch checks it first: in-process, under 0.1 s each)
    "services/inference/batching.py": [
        *INFERENCE_IN_PROCESS_TESTS,
        "tests/unit/test_sharding_fence.py",
        "tests/unit/test_mutation_kills_inference.py",
        "tests/unit/test_mutation_kills_batching.py",
    ],
    # the batched online features (bit-identical to OnlineFeatures.update): the bank's own
    # tests and the service's batching tests (every batch equal to bar by bar)
    "shared/feature_bank.py": [
        "tests/unit/test_feature_bank.py",
        "tests/unit/test_inference_batching.py",
        "tests/unit/test_mutation_kills_feature_bank.py",
    ],
    # which IB fills of this session's orders are accounted (booked or in a position report)
    # and which still count as working: a wrong count books a fill twice or orders it again
    "services/execution/fill_book.py": [
        "tests/unit/test_execution_fill_book.py",
        "tests/unit/test_ib_broker_fill_accounting.py",
        "tests/unit/test_mutation_kills_fill_book.py",
    ],
    # rendezvous sharding's bookkeeping (pure: `now` passed in); the fence file's service
    # wiring tests are in-process (tests/inference_harness.py), under 0.1 s each
    "services/inference/sharding.py": [
        "tests/unit/test_sharding_rendezvous.py",
        "tests/unit/test_sharding_fence.py",
        "tests/unit/test_sharding_handover_timing.py",
        "tests/unit/test_mutation_kills_sharding.py",
    ],
}
# Modules mutated only in some functions (mutmut name stems): the money path of a large module.
# shared/backtest.py: the run over a bar slice that turns targets into fills, cash and round
# trips (the one-bar accounting core it calls is shared/rebalancing.py's row since the split).
# The pandas reference loop and its metrics (the test oracle itself), the baselines with the MA
# grid search and ModelPolicy (inference's) moved out in 5af5a6f: shared/backtest_reference.py,
# baselines.py, model_policy.py.
SCOPE: dict[str, list[str]] = {
    "shared/backtest.py": [
        "x_round_trips",
        "x_run_backtest",
        "x_run_policy",
    ],
    # shared/rebalancing.py: a target into shares, cash and fees at one bar (clip, size,
    # rebalance, the decision bar's close and ATR, the shared sizer's resize); not the vector
    # env's rebalance_arrays (test_env's) nor AccountConfig's validation
    "shared/rebalancing.py": [
        "x_clip_targets",
        "x_clip_target",
        "x_order_quantity",
        "x_rebalance",
        "x_decision_refs",
        "x_resize",
    ],
    # shared/loaded_model.py: inference's decision core (LoadedModel: ONNX outputs -> target),
    # not the artifact loading and validation around it (load_artifact, pipeline_from_manifest).
    # The model folder store and the push history moved out of shared/manifest.py in e015433
    # (shared/model_store.py), the schema and check_compatible stay there (neither mutated).
    "shared/loaded_model.py": [
        "xǁLoadedModelǁ__init__",
        "xǁLoadedModelǁoutputs",
        "xǁLoadedModelǁ_target",
        "xǁLoadedModelǁdecide",
        "xǁLoadedModelǁdecide_batch",
        "xǁLoadedModelǁnormalise",
    ],
    # inference/service.py: the decision path (bar in -> features -> observation with the
    # position the policy sees -> model -> target out), the position update, the per-symbol
    # state, dedupe / seq / backfill / epoch checks, the shadow's targets; not the socket
    # wiring (consume, heartbeats, close, topics), start-up model loading, status reporting or
    # the benchmark helper decide_many. The receive batch moved to inference/batching.py (its
    # own row). Names that a version of the module does not have match nothing.
    "services/inference/service.py": [
        "xǁInferenceServiceǁ_state",
        "xǁInferenceServiceǁonline_features",
        "xǁInferenceServiceǁ_features",
        "xǁInferenceServiceǁ_refused",
        "xǁInferenceServiceǁ_accepted",
        "xǁInferenceServiceǁ_apply",
        "xǁInferenceServiceǁ_admit",
        "xǁInferenceServiceǁ_pipeline_mismatch",
        "xǁInferenceServiceǁ_epoch_changed",
        "xǁInferenceServiceǁ_reset_symbol",
        "xǁInferenceServiceǁ_decide_and_publish",
        "xǁInferenceServiceǁ_publish_signal",
        "xǁInferenceServiceǁ_shadow_decide",
        "xǁInferenceServiceǁ_shadow_publish",
        "xǁInferenceServiceǁ_shadow_batch",
    ],
    # inference/batching.py: the receive batch (queue, one feature pass, one observation block,
    # one ONNX call, the row-by-row fallbacks, publish order); not the handler-error log line
    "services/inference/batching.py": [
        "xǁDecisionBatchǁadd",
        "xǁDecisionBatchǁobservations",
        "xǁDecisionBatchǁqueue",
        "xǁDecisionBatchǁclear",
        "xǁBatchedDecisionsǁhandle_batch",
        "xǁBatchedDecisionsǁon_bar",
        "xǁBatchedDecisionsǁflush_batch",
        "xǁBatchedDecisionsǁ_batch_features",
        "xǁBatchedDecisionsǁ_batch_observations",
        "xǁBatchedDecisionsǁ_flush_symbol",
    ],
    # inference/sharding.py: what decides which replica serves a symbol (the timing derived at
    # start, the rendezvous owner, membership, expiry, the hand-over and the self-fence); not
    # describe() (status reporting)
    "services/inference/sharding.py": [
        "xǁShardTimingǁ__post_init__",
        "x_handover_timing",
        "x_replica_id",
        "x_score",
        "x_owner",
        "xǁChangesǁ__bool__",
        "xǁShardingǁheartbeat_sent",
        "xǁShardingǁstale",
        "xǁShardingǁfence",
        "xǁShardingǁjoining",
        "xǁShardingǁlive_peers",
        "xǁShardingǁmembers",
        "xǁShardingǁon_heartbeat",
        "xǁShardingǁexpire",
        "xǁShardingǁnote_signal",
        "xǁShardingǁreconcile",
        "xǁShardingǁstart",
    ],
}
QUICK_SAMPLE = ["shared/costs.py", "shared/accounting.py"]
# --quick: the whole run's budget (make's cap is 300 s; staging and reporting need the rest),
# and how many mutants of the changed functions a module outside QUICK_ELIGIBLE gets
QUICK_BUDGET_S = 270.0
QUICK_MAX_MUTANTS = 16
# Changed modules the quick gate does not sample yet, and why (a module enters the gate once
# its full run and test selection are in the report)
QUICK_NOT_GATED: dict[str, str] = {}
# modules whose whole run takes under a minute here (2 cores): the ones CI may pick when changed
QUICK_ELIGIBLE = ["shared/costs.py", "shared/accounting.py"]

# Free-text notes for the report: modules not run or not yet at the goal, and why.
NOTES: list[str] = [
    "`shared/backtest.py`, `shared/rebalancing.py` and `shared/loaded_model.py` are mutated "
    "only in the functions named in SCOPE (scripts/mutate_config.py): the backtest's "
    "accounting and sizing path (clip, size, rebalance, decision_refs, resize: "
    "`shared/rebalancing.py` since "
    "the split; round_trips, run_backtest, run_policy; not the vector env's rebalance_arrays "
    "nor the pandas reference loop and its metrics, which are the tests' oracle) and "
    "`LoadedModel`, inference's decision core (ONNX outputs -> target), with the regime gate it "
    "applies (`shared/loaded_model.py` since the split, `shared/manifest.py` before). The "
    "backtest's selection leaves out `test_selection_evaluate.py` (its CLI test alone runs "
    "35 s; the exit costs it checks are checked by hand in `test_mutation_kills_backtest.py`) "
    "and `test_backtest_risk_rules.py` (the risk rules' own paths are killed by hand-computed "
    "stop / halt series in `test_mutation_kills_backtest.py`). The rules as the backtester "
    "applies them have their own row (`shared/backtest_risk.py`, every function; its selection "
    "leaves out `test_export_risk_rules.py`, which trains a policy first: 7 s a run). The "
    "rule arithmetic it reuses (`shared/env_risk.py`: RiskRules, day_ids, stop_level(s), "
    "stop_triggered, RiskState) and the regime gate (`shared/regime_gate.py`: cap_for, "
    "gate_target, check_caps, RegimeGate) have rows of their own, every function; the gate's "
    "selection leaves out `test_regime_caps_export.py` (it trains and exports a policy first: "
    "5 s a run) and reaches the gate through `LoadedModel` (`test_mutation_kills_loaded_model.py`) "
    "as well as directly. The pandas oracle (`shared/backtest_reference.py`), the baselines "
    "(`shared/baselines.py`) and `ModelPolicy` (`shared/model_policy.py`) moved out of "
    "`shared/backtest.py` unchanged in 5af5a6f; checked with `--changed-only --source-ref HEAD` "
    "(2026-12-01 03:40 UTC): no SCOPE function changed, so the row stands. The model folder "
    "store (`write_artifact`, `resolve_artifact`, `list_versions`) and the push history "
    "(`PUSH_HISTORY_FILE`, `read_push_history`, `current_pushed_version`) moved out of "
    "`shared/manifest.py` unchanged in e015433 (to `shared/model_store.py`); checked with "
    "`--changed-only --source-ref HEAD` (2026-12-01 03:56 UTC): no SCOPE function changed "
    "(0 mutants), so the row stands.",
    "The split of 72dd10b moved functions unchanged (byte-identical sources) out of three "
    "rows: `shared/features.py` -> `shared/feature_config.py` (FeatureConfig, feature_names, "
    "warmup_bars, pipeline_fingerprint) and `shared/normaliser.py` (Normaliser); "
    "`shared/backtest.py` -> `shared/rebalancing.py` (AccountConfig and the one-bar accounting "
    "core; SCOPE: clip_targets, clip_target, order_quantity, rebalance, decision_refs, resize); "
    "`shared/manifest.py` -> `shared/loaded_model.py` (LoadedModel, load_artifact, "
    "pipeline_from_manifest; SCOPE: LoadedModel, so manifest.py's row became loaded_model.py's "
    "and manifest.py, with no SCOPE function left, is no row). In a fresh checkout, "
    "`--rebuild-history --source-ref 5ed175e` rebuilt var/mutate/ from this report (all 17 "
    "rows: each source's mutants add up to its row; the report written from it read the same), "
    "then `--changed-only --source-ref HEAD` took the moved functions' mutants out of "
    "`shared/backtest.py` (895 -> 685 mutants, 93.4 -> 92.7 % raw) and `shared/features.py` "
    "(1,050 -> 748, 92.0 -> 89.6 % raw: the moved config and normaliser were killed more often "
    "than the formulas) without a re-run (no function left in either changed). The four new "
    "modules ran in full at 2dc14d3 (2026-12-02 06:47-06:54 UTC, --source-ref HEAD): "
    "feature_config 124 mutants in 52 s, normaliser 178 in 57 s, rebalancing 210 in 27 s, "
    "loaded_model 166 in 31 s; their 30 survivors are exactly the moved functions' 30 listed "
    "equivalents, re-keyed to the new names and still matching the diffs they were judged on "
    "(the kill counts equal the old rows': loaded_model 151 of 166 as manifest's). "
    "`test_mutation_kills_manifest.py` is now `test_mutation_kills_loaded_model.py`. "
    "`shared/backtest_risk.py`'s `RiskBook.__init__` and `decide` import decision_refs / "
    "resize from their new module (one changed line each): their 125 mutants re-ran with "
    "`--changed-only --source-ref HEAD` at af07717 (2026-12-02 06:59 UTC, 30 s; 8 survivors, "
    "all listed equivalents whose diffs still match; the row stays 189 mutants, 92.6 %). The "
    "quick gate now stages under `var/mutate/quick/`: it used to replace the stage of a "
    "module's recorded run, after which `--changed-only` refused that module (found here: "
    "backtest_risk's stage, restored from 5ed175e's source, which the rebuilt row's sha256 "
    "accepted).",
    "`services/inference/service.py` is mutated in the functions named in SCOPE: the decision "
    "path (bar -> features -> observation with the fed-back position -> target), the position "
    "update, the per-symbol state, dedupe / seq / backfill / epoch checks and the shadow's "
    "targets (the receive batch until 5f92cf8, which moved it unchanged to "
    "`services/inference/batching.py`); not the socket wiring, start-up model loading or "
    "status. Its "
    "selection is every in-process test of the service (one harness, "
    "`tests/inference_harness.py`). The batch paths fall back row by row when a batched step "
    "fails, which hides a broken batched step from the signals: the tests pin that the batched "
    "path is taken (one ONNX call, one observation block). A surviving mutant found a real bug "
    "(an epoch change inside one receive batch skipped or doubled a signal), fixed in 81a5c8a. "
    "Checked with `--changed-only --source-ref HEAD` at 16551c1 (2026-11-30 18:55 UTC): no "
    "function of service.py or features.py changed since its row. The CI sample of service.py "
    "(16 mutants of a change's functions) took 93 s on the loaded 2-core VM. After the feature "
    "bank (ba59c28: `_features` split into `_refused` / `_accepted`, `online_features`, "
    "`_state`, `_reset_symbol`) and the split (5f92cf8), those six functions re-run with "
    "`--changed-only --source-ref HEAD` (2026-12-01 01:17 UTC: 111 mutants, 46 s; 9 "
    "survivors, all listed equivalents whose judged diffs still match); the moved functions' "
    "mutants left the row (`--changed-only` now drops the mutants of functions no longer in "
    "SCOPE; before, a moved function kept its old statuses in the old row).",
    "`services/inference/batching.py` (the receive batch: queue, one feature pass, one "
    "observation block, one ONNX call, the row-by-row fallbacks; moved out of service.py in "
    "5f92cf8; SCOPE: every function but the handler-error log line) in full at 5f92cf8 "
    "(2026-12-01 01:19 UTC: 220 mutants, 29 survivors, 12 of them the moved functions' listed "
    "equivalents, held to the diffs they were judged on; the others' numbering shifted with "
    "the self-fence and the bank and were judged again), then its survivors against "
    "`test_mutation_kills_batching.py` and the self-fence tests added to its selection "
    "(handle_batch checks the fence first): 5 killed, 24 listed equivalents (89.1 % raw).",
    "`shared/feature_bank.py` (a receive batch's online features in one numpy pass, "
    "bit-identical to `OnlineFeatures.update`; ba59c28 and the adopt/leave thresholds of "
    "30737ed / 0abf82b) in full (2026-12-01 01:19 UTC, source 0abf82b: 978 "
    "mutants, 742 s, 86 survivors and one segfault: 91.1 %). The survivors were mostly "
    "speed paths (the one-bank shortcut of update_features, the view of consecutive slots, "
    "the slice for an all-warm batch), dtypes, zip's strict, slots and finalizers read only "
    "while banked, and EWM denominators that are exactly 1.0; the ones that mattered were "
    "degenerate rows no test fed banked (a constant close: RSI 0 / 0 -> 100 and a MACD "
    "signal equal to MACD), both sides of the zero-width band and volume-z cut-offs, mixed "
    "plain and banked features with refusals, a batch of exactly LEAVE_MAX and the "
    "other-bank refusal text: `test_mutation_kills_feature_bank.py` (each row also equal to "
    "`OnlineFeatures` bit for bit), then the survivors re-run. No survivor showed the bank "
    "differing from `OnlineFeatures`. Its selection: `test_feature_bank.py` and the "
    "service's batching tests. Session 8 (0ca8a43) added the compiled pass "
    "(`shared/feature_kernel.py`, numba): the two changed functions (`FeatureBank.__init__`, "
    "`update_batch`: 144 mutants) re-run with `--changed-only`, every test now running on both "
    "paths (`bank_path`); the 5 new survivors (asking for `compiled=True` without numba, its "
    "message) killed by `test_asking_for_the_compiled_pass_without_numba_is_refused_by_name`; "
    "the capacity equivalent re-keyed to its new line. The kernel module itself is not a row: "
    "mutmut cannot mutate numba-compiled functions; it is checked by the bank's row-by-row "
    "equality with `OnlineFeatures` on both paths and by `test_feature_kernel.py`.",
    "Source versions of the rows: `shared/backtest.py` in full as of a0ec830 (the sizing "
    "change), then its two functions changed since (`run_backtest`, `run_policy`: the risk "
    "rules, 17b873f) re-run with `--changed-only --source-ref HEAD` (2026-11-30 21:35 UTC: "
    "423 mutants, 378 s); `shared/manifest.py` in full as of 94e0dc3, then "
    "`LoadedModel.__init__`, `decide` and `decide_batch` (the regime gate, 47737bf) re-run the "
    "same way (21:27 UTC: 109 mutants, about 1 min; `load_artifact`, `check_compatible` and "
    "`pipeline_from_manifest` changed too, outside SCOPE); then the survivors of both against "
    "the new kill tests (the survivors' time in the table). Those two "
    "rows were recorded before per-mutant statuses were kept: `--changed-only` rebuilt the "
    "unchanged functions' statuses from the row's survivors and counts (every other mutant "
    "killed; refused when the counts do not add up). `shared/backtest_risk.py` in full as of "
    "17b873f (2026-11-30 21:45 UTC), then its survivors against the new kill tests. "
    "`shared/regime_gate.py` in full as of 47737bf and `shared/env_risk.py` in full as of "
    "d9e68c8 (both 2026-11-30 21:50 UTC, the tree at da9a522; env_risk's full run already "
    "had the first 15 tests of its kill file, regime_gate's none), then their survivors "
    "against the kill tests. "
    "`shared/sizing.py` (execution's sizing rule, shared with the env and the backtest since "
    "7207a8b) in full as of 7207a8b (2026-11-30 21:53 UTC, the tree at 3e5ab9c: no kill file "
    "yet; 615 mutants, 156 survivors, 55 of them SizingConfig's bounds and messages and 45 "
    "the array versions' edge rows, which the scalar-parity hypothesis test never draws), then "
    "its survivors against `test_mutation_kills_sizing.py` (c320923); its selection is the "
    "oracle contract, the decision parity and execution's risk and decision tests, not "
    "`test_env.py` / `test_backtest.py` (slow; they reach it through their own rows). "
    "`services/execution/order_journal.py` in full as of 3f5cd0b (the first session's run; "
    "the commit is inferred: its source gives the row's 417 mutants and nothing changed the "
    "module until 0784737), then its eight functions changed since (0784737, 3a1d293: "
    "reservation only before placeOrder, the in-memory reference index, WAL checkpoints on "
    "their own connection, SENT with the day's order count) re-run with `--changed-only "
    "--source-ref HEAD` (2026-11-30 22:04 UTC at c96f160: 148 mutants, 69 not killed, 29 of "
    "them checkpoint's with no test reaching it; about 50 s wall, staging included; its own "
    "time was lost when an unfinished survivors re-run was merged over the row, which was "
    "restored from the run's log; the tool now refuses to merge an unfinished re-run), then "
    "its survivors against the new kill tests (the survivors' time in the table). "
    "`services/execution/risk.py` in full as of 7623185 (the first session's run; checked: "
    "its stage's sha256 is that commit's file), then the functions changed since (9c736fc's "
    "snap, 7207a8b: the sizer moved to `shared/sizing.py` and is only re-exported, so the moved "
    "functions' mutants left the row; `decide` calls `clip_to_gross_exposure`; 3a1d293: the "
    "one-entry local-time cache and the refusal text formatted only for a refusal) re-run "
    "with `--changed-only --source-ref HEAD` (2026-11-30 22:08 UTC at a4eb61b: 191 mutants, "
    "about 35 s wall, staging included), then its survivors against the new kill tests. "
    "`shared/features.py` in full as of 87a4330 (the regime hook; full run 2026-11-30 18:00 "
    "UTC), then the one function changed since (`OnlineFeatures.update`, 1b6f5ca) re-run with "
    "`--changed-only`, which mutates only the functions whose source differs from the last "
    "run's staged copy and keeps the other mutants' statuses (the source column says which "
    "commit each part is from). `--survivors-only` re-runs the last survivors against new tests "
    "and refuses a module whose sha256 changed. The other rows (`shared/costs.py`, "
    "`shared/accounting.py`, `services/execution/decision.py`) are the first session's runs "
    "(same day, 13:36 UTC report).",
    "mutmut numbers mutants within a function, so after a function changes a listed name can "
    "denote another mutation: every judgement is stored with the diff it was made on "
    "(scripts/mutation_equivalents.json, written by `--record-judged`) and a listed survivor "
    "whose diff differs is reported open again until it is re-judged.",
    "The quick CI gate samples every changed module of the table (QUICK_NOT_GATED is empty "
    "now); a sampled module is judged on the mutants its share of the 270 s budget reached.",
    "`services/execution/fill_book.py` (which IB fills of this session's orders are accounted: "
    "moved out of ib_broker.py in 82492d1) in full and `services/inference/sharding.py` in the "
    "functions named in SCOPE (timing at start, ids and scores, membership, expiry, reconcile, "
    "fence; not describe) as of 6c92e1f (--source-ref HEAD, 2026-12-01 00:36 UTC): fill_book "
    "70 mutants, 5 survivors (92.9 %: a one-share remainder, a second done report of a key, "
    "two executions in one position report, other symbols' pending executions); sharding "
    "235 mutants, 46 survivors (80.4 %: the one-week bound and its message, timing with a "
    "heartbeat other than 1 s, the refusal hints, replica ids with a second '@', the score's "
    "digest size, `joining` / `live_peers` at their exact boundaries, on_heartbeat's change "
    "flag, rule 5 against a joining peer's claim, note_signal's ordering, the hand-over and "
    "fence counters). Then the survivors against the kill files, twice for sharding (one "
    "message pinned whole after the first re-run; the table shows the last re-run). Their "
    "selections are fast unit tests: the fence file's service tests are in-process (under "
    "0.1 s each); test_sharding_handover_timing's subprocess test reaches only start-up.",
    "The stage rewrites `services.execution` / `services.inference` imports in the copied tests to "
    "the package names, so those tests exercise the mutated module (the repository's tests are "
    "not changed).",
]
