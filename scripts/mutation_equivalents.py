"""Surviving mutants of the money paths judged equivalent or accepted, each with its reason.

Read by scripts/mutate_judged.py (kept apart: data, not the runner). Keys are mutmut's mutant names;
the report lists each beside its diff. "equivalent": no input tells the mutant from the original;
"accepted": it differs only at an exact floating-point boundary or in how often an exact re-sum
runs, which a test could pin only by testing a constant, not behaviour.
"""

from __future__ import annotations

# Surviving mutants judged equivalent (no input can tell them from the original) or accepted,
# each with its reason. Keyed by mutmut's mutant name; the report lists them beside the diff.
EQUIVALENT: dict[str, str] = {
    # shared/costs.py
    "shared.costs.xǁCostModelǁcommissions__mutmut_10": (
        "equivalent for numbers: `price` is multiplied by the float64 array `q`, so any int or "
        "float32 price is promoted to float64 exactly as `dtype=np.float64` would"
    ),
    "shared.costs.xǁCostModelǁcommissions__mutmut_12": (
        "equivalent for numbers: same as commissions__mutmut_10 (the dtype argument dropped)"
    ),
    "shared.costs.xǁCostModelǁfill_prices__mutmut_9": (
        "equivalent for numbers: `ref_price` is multiplied by the float64 array "
        "`1.0 + s * adverse_fraction`, which promotes an int or float32 price to float64 exactly"
    ),
    "shared.costs.xǁCostModelǁfill_prices__mutmut_11": (
        "equivalent for numbers: same as fill_prices__mutmut_9 (the dtype argument dropped)"
    ),
    "shared.costs.xǁCostModelǁfrom_dict__mutmut_4": (
        "equivalent: msgspec.convert treats strict=None like strict=False (checked: string "
        "numbers are converted under both)"
    ),
    # services/execution/decision.py
    "execution.decision.x_build_order__mutmut_5": (
        "equivalent: `delta >= 0` differs only at delta 0, and decide_order answers OnTarget "
        "for a zero delta, so build_order never sees one"
    ),
    "execution.decision.x_build_order__mutmut_26": (
        "equivalent: same as build_order__mutmut_5 (side of a zero delta)"
    ),
    "execution.decision.x_build_order__mutmut_51": (
        "equivalent: with |target| == |position| the bracket test |target| - |position| == "
        "|delta| is 0 == |delta|, false for any order"
    ),
    "execution.decision.x_build_order__mutmut_56": (
        "equivalent: `target >= 0` differs only at target 0, already excluded by `target != 0`"
    ),
    "execution.decision.x_build_order__mutmut_57": (
        "equivalent: `target > 1` differs only for target 1 with a long position 0 < p < 1; then "
        "|target| - |position| is not a whole number and never equals the integer |delta|"
    ),
    "execution.decision.x_build_order__mutmut_59": (
        "equivalent: `position >= 0` differs only at 0, where `position == 0` short-circuits"
    ),
    # services/execution/risk.py
    "execution.risk.xǁTradingScheduleǁrefusal__mutmut_20": (
        "equivalent: session bounds are whole minutes and (s + us/1000001)/60 stays in [0, 1) "
        "like (s + us/1e6)/60, so no comparison with a whole minute changes"
    ),
    "execution.risk.xǁTradingScheduleǁrefusal__mutmut_21": (
        "equivalent: same argument, seconds/61 and seconds/60 are both in [0, 1) and zero together"
    ),
    "execution.risk.xǁRiskManagerǁdecide__mutmut_1": (
        "equivalent for every admissible config: rebalance_threshold < 1 (PaperTradingConfig), "
        "so threshold * 1 < 1 <= |delta| and the default full=1 suppresses nothing, as full=0 "
        "does"
    ),
    "execution.risk.xǁRiskManagerǁdecide__mutmut_44": (
        "equivalent: `target >= 0` differs only at 0, excluded by `target != 0`"
    ),
    "execution.risk.xǁRiskManagerǁdecide__mutmut_47": (
        "equivalent: `current >= 0` differs only at 0, where `current == 0` short-circuits"
    ),
    # services/execution/risk.py since 7207a8b/3a1d293 (the sizer moved to shared/sizing.py; the
    # local-time cache): the moved functions' and decide's old judgements went with the old source
    "execution.risk.xǁTradingScheduleǁ__init____mutmut_7": (
        "equivalent: the empty cache entry holds no datetime, and local() uses an entry only "
        "when its datetime is not None, so its timestamp (0 or 1) never matters"
    ),
    "execution.risk.xǁTradingScheduleǁlocal__mutmut_8": (
        "equivalent: a naive fromtimestamp is the system's local time (fold set in a repeated "
        "hour) and astimezone reads a naive datetime as that same local time, so the instant "
        "and its self.tz view are the same"
    ),
    "execution.risk.xǁTradingScheduleǁlocal__mutmut_10": (
        "equivalent: same as local__mutmut_8 (tz dropped)"
    ),
    # services/execution/order_journal.py (__init__'s old judgements went with its old source:
    # 0784737 renumbered its mutants; its current ones are judged under the fast path below)
    "execution.order_journal.xǁOrderJournalǁset_value__mutmut_11": (
        "equivalent: json.dumps treats allow_nan=None like False (falsy): NaN is refused either way"
    ),
    "execution.order_journal.xǁOrderJournalǁsave_fill__mutmut_22": (
        "equivalent: only the letter case of SQL identifiers changed (continuation line of the "
        "upsert)"
    ),
    "execution.order_journal.xǁOrderJournalǁset_value__mutmut_9": (
        "equivalent: only the letter case of SQL identifiers changed (continuation line of the "
        "upsert)"
    ),
    # shared/accounting.py
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_22": (
        "equivalent: `quantity >= 0` differs from `> 0` only at 0, where `quantity == 0` "
        "already short-circuits the `or`"
    ),
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_25": (
        "equivalent: `signed_qty >= 0` differs only at 0, which is refused two lines above"
    ),
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_46": (
        "equivalent: in the closing branch the position is never 0 (0 takes the same-direction "
        "branch), so `>= 0` and `> 0` agree"
    ),
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_51": (
        "equivalent: `direction` is exactly +1.0 or -1.0, and x / ±1.0 == x * ±1.0 in IEEE 754"
    ),
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_56": "equivalent: x / ±1.0 == x * ±1.0",
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_59": "equivalent: x / ±1.0 == x * ±1.0",
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_61": (
        "accepted: `<= 1e-12` vs `< 1e-12` differs only for a residual of exactly 1e-12 shares, "
        "the boundary of a dust tolerance; pinning it would test the constant, not behaviour"
    ),
    "shared.accounting.xǁSymbolBookǁapply_fill__mutmut_68": (
        "accepted: same dust-tolerance boundary (a flip remainder of exactly 1e-12 shares)"
    ),
    # shared/features.py
    # -- dtype arguments: float64 either way
    "shared.features.x__safe_div_where__mutmut_4": (
        "equivalent: np.full with a Python float fill (0.5 or 0.0) makes a float64 array "
        "without dtype"
    ),
    "shared.features.x__safe_div_where__mutmut_7": "equivalent: same as _safe_div_where__mutmut_4",
    "shared.features.x__batch__mutmut_17": (
        "equivalent: high is used only beside float64 low and close (ta's true range: high - "
        "low, high - prev close), so a float32 high widens exactly (the float32 test kills the "
        "close column's mutant)"
    ),
    "shared.features.x__batch__mutmut_25": (
        "equivalent: same as _batch__mutmut_17 for low (always combined with float64 high/close)"
    ),
    "shared.features.x__batch__mutmut_43": (
        "equivalent: ta's RSI of the float64 close series is a float64 series; to_numpy() keeps it"
    ),
    "shared.features.x__batch__mutmut_59": "equivalent: same as _batch__mutmut_43 (ta MACD line)",
    "shared.features.x__batch__mutmut_62": "equivalent: same as _batch__mutmut_43 (MACD diff)",
    "shared.features.x__batch__mutmut_71": "equivalent: same as _batch__mutmut_43 (BB mavg)",
    "shared.features.x__batch__mutmut_127": (
        "equivalent: ta's ATR is built on np.zeros (float64); to_numpy() keeps float64"
    ),
    "shared.features.x__batch__mutmut_210": "equivalent: same as _batch__mutmut_43 (SMA fast)",
    "shared.features.x__batch__mutmut_216": "equivalent: same as _batch__mutmut_43 (SMA slow)",
    # -- pandas index arguments: RangeIndex(len(bars)) is pandas' default index
    "shared.features.x__batch__mutmut_2": (
        "equivalent: pd.Series(values, index=None) gets RangeIndex(len) itself"
    ),
    "shared.features.x__batch__mutmut_6": "equivalent: same as _batch__mutmut_2 (default index)",
    "shared.features.x__batch__mutmut_8": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_14": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_16": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_22": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_24": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_30": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_32": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_164": "equivalent: same as _batch__mutmut_2",
    "shared.features.x__batch__mutmut_166": "equivalent: same as _batch__mutmut_2",
    "shared.features.xǁOnlineFeaturesǁupdate_many__mutmut_2": (
        "equivalent: itertuples(index=None) is falsy like False: no index field"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate_many__mutmut_4": (
        "equivalent: without name=None the rows are namedtuples, which unpack the same"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate_many__mutmut_17": (
        "equivalent: update() deletes `open` unread (no feature uses it)"
    ),
    # -- NaN plumbing that the warm-up rows cover
    "shared.features.x__batch__mutmut_69": (
        "equivalent: only bollinger_mavg() is read from ta's bands, and it ignores window_dev"
    ),
    "shared.features.x__batch__mutmut_109": (
        "equivalent: np.where(.., None, ..) gives an object column whose None the final "
        "astype(np.float64) turns into NaN"
    ),
    "shared.features.x__batch__mutmut_114": (
        "equivalent: mavg (ta rolling mean) and mstd (two-pass window) are NaN on the same rows "
        "(a window short of bars or holding a NaN), so & and | agree"
    ),
    "shared.features.x__batch__mutmut_128": (
        "equivalent: assigning None into a float64 array stores NaN"
    ),
    "shared.features.x__batch__mutmut_130": (
        "equivalent: row atr_window - 2 lies inside the warm-up rows (warmup_bars >= atr_window)"
        " that are set to NaN at the end"
    ),
    "shared.features.x__batch__mutmut_156": "equivalent: same as _batch__mutmut_109 (None->NaN)",
    "shared.features.x__batch__mutmut_201": "equivalent: same as _batch__mutmut_109 (None->NaN)",
    "shared.features.x__batch__mutmut_206": (
        "equivalent: rv_s's window is the tail of rv_l's, so rv_l is NaN wherever rv_s is (a "
        "NaN return in the short window is in the long one too); rv_l NaN alone is the warm-up, "
        "set to NaN at the end"
    ),
    # -- zero-width thresholds at exact equality
    "shared.features.x__batch__mutmut_86": (
        "accepted: `<` vs `<=` differs only when the band width equals 2k*1e-9*|mavg| to the "
        "bit (mavg > 0 for prices > 0, so a zero width is flat either way); the threshold's "
        "sides are tested at 0.5e-9/0.8e-9/1.25e-9"
    ),
    "shared.features.x__batch__mutmut_185": (
        "accepted: differs only when the long realised vol is exactly 0 and the short one is "
        "not; the short window is the tail of the long one, so that needs rounding in the mean "
        "of identical returns (not found for constant-growth series: both are 0 or both > 0)"
    ),
    # -- the online state that is rebuilt or never read
    "shared.features.xǁ_Ewmǁpush__mutmut_6": (
        "equivalent: _den = (1 - a) + a rounds to exactly 1.0 for every a in [0, 1] (checked: "
        "1e6 random a, and 1/n, 2/(n+1) for n < 1e5), and x / 1.0 == x * 1.0"
    ),
    "shared.features.xǁ_Rollingǁ__init____mutmut_4": (
        "equivalent: every buffer slot is written in the first n pushes before _resum or the "
        "eviction reads it"
    ),
    "shared.features.xǁ_Rollingǁ__init____mutmut_6": (
        "equivalent: the ring starts one slot later; the n slots still hold the last n values "
        "and the next write still evicts the oldest"
    ),
    "shared.features.xǁ_Rollingǁ__init____mutmut_9": (
        "equivalent: the first push sets _anchor before anything reads it"
    ),
    "shared.features.xǁ_Rollingǁ__init____mutmut_10": "equivalent: same as __init____mutmut_9",
    "shared.features.xǁ_Rollingǁ__init____mutmut_12": (
        "equivalent: the n-th push re-sums _anchor/_s/_s2 from the buffer, and no window is "
        "read before it is full (warmup_bars > every window; the kill tests read full windows)"
    ),
    "shared.features.xǁ_Rollingǁ__init____mutmut_14": "equivalent: same as __init____mutmut_12",
    "shared.features.xǁ_Rollingǁ__init____mutmut_16": (
        "equivalent: the first re-sum still happens at the n-th push (count reaches n there) "
        "and resets _since to 0"
    ),
    "shared.features.xǁ_Rollingǁpush__mutmut_4": (
        "equivalent: the anchor set at the second push instead of the first only makes the "
        "sums of the first n pushes inconsistent; the n-th push re-sums them from the buffer "
        "before any read (see __init____mutmut_12)"
    ),
    "shared.features.xǁ_Rollingǁpush__mutmut_37": (
        "accepted: re-summing every n/2 pushes instead of every n only makes the sums more "
        "exact: same mean/std up to rounding (tested to 1e-12 / 1e-15)"
    ),
    "shared.features.xǁ_Rollingǁpush__mutmut_38": (
        "accepted: same as push__mutmut_37 (re-sums on every push once full)"
    ),
    "shared.features.xǁ_Rollingǁ_resum__mutmut_14": (
        "accepted: same as push__mutmut_37 (re-sums every n - 1 pushes)"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_7": (
        "accepted: the stale-anchor re-sum then runs on every std() of a full window: more "
        "exact, same value up to rounding"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_8": (
        "accepted: re-sums whenever the window is full and its mean is off the anchor: more "
        "re-sums, same value up to rounding"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_10": (
        "accepted: the re-sum heuristic at exact equality m*m == 16*var: either branch gives "
        "the std up to rounding"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_12": (
        "accepted: 16 vs 17 is the heuristic's cut-off for re-anchoring; between them the "
        "cancellation costs at most ~4 bits, below the tests' 1e-7 tolerance on std"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_14": (
        "accepted: the heuristic's `|m| > 1e-12 |anchor|` at exact equality: either branch "
        "gives the std up to rounding"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_15": (
        "accepted: a different (looser or tighter) cut-off only changes when the exact re-sum "
        "runs, not the std beyond rounding"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_20": (
        "equivalent up to rounding: right after _resum, _s = fsum of deviations from the exact "
        "mean is at rounding level, so m*m (or (s*n)^2) is below var's last bit"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_22": (
        "equivalent up to rounding: same as std__mutmut_20"
    ),
    "shared.features.xǁ_Rollingǁstd__mutmut_28": "equivalent: sqrt(0.0) == 0.0",
    "shared.features.xǁOnlineFeaturesǁ__init____mutmut_14": (
        "equivalent: a longer ring of closes; closes[(last - h) % len] is still the close h "
        "bars back, and every slot read is written by warm-up"
    ),
    "shared.features.xǁOnlineFeaturesǁ__init____mutmut_18": (
        "equivalent: the ring of closes starts one slot later; indexing is relative to _ci"
    ),
    "shared.features.xǁOnlineFeaturesǁ__init____mutmut_19": (
        "equivalent: _prev_close is read only when not the first bar, after it is set"
    ),
    "shared.features.xǁOnlineFeaturesǁ__init____mutmut_20": (
        "equivalent: _prev_high is never read"
    ),
    "shared.features.xǁOnlineFeaturesǁ__init____mutmut_21": ("equivalent: _prev_low is never read"),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_55": (
        "equivalent: at diff == 0 the up-move is 0 either way (diff itself is 0.0)"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_62": (
        "equivalent: at diff == 0 the down-move is -0.0 vs 0.0; the EWM and RSI values are equal"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_73": (
        "equivalent: macd is read only after warm-up (>= macd_slow + macd_signal - 1 bars), "
        "when the MACD branch has always set it"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_74": "equivalent: same as update__mutmut_73",
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_77": (
        "equivalent: both EMAs are pushed every bar, so their nobs are equal; nobs >= macd_slow "
        "> macd_fast (validated) makes `> macd_fast` true whenever `>= macd_slow` is"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_83": (
        "equivalent: on the first bar prev is NaN, and Python's max keeps its first argument "
        "(high - low) when the later ones are NaN (NaN > x is false)"
    ),
    # shared/backtest.py
    "shared.backtest.x_run_backtest__mutmut_34": (
        "equivalent: prev[0] = NaN only puts bar 0 among the bars evaluated; bar 0 starts flat, "
        "so a flat target there trades nothing and any other target is evaluated anyway"
    ),
    "shared.backtest.x_run_backtest__mutmut_35": (
        "accepted: prev[0] is then np.empty_like's leftover memory; like "
        "run_backtest__mutmut_34 that only adds bar 0 to the evaluated bars, unless the "
        "leftover equals the first target exactly"
    ),
    "shared.backtest.x_run_backtest__mutmut_63": (
        "equivalent: ref_close/ref_atr are read only in the shared sizer's branch, which sets "
        "them; this is the risk_fraction branch"
    ),
    "shared.backtest.x_run_backtest__mutmut_65": "equivalent: same as run_backtest__mutmut_63",
    "shared.backtest.x_run_policy__mutmut_42": "equivalent: np.zeros is float64 by default",
    "shared.backtest.x_run_policy__mutmut_44": "equivalent: np.zeros is float64 by default",
    "shared.backtest.x_run_policy__mutmut_15": (
        "equivalent: with start 0 the warm-up is bars.iloc[:0], empty, which decision_refs "
        "(the backtest's and the RiskBook's) treats as no warm-up"
    ),
    "shared.backtest.x_run_policy__mutmut_16": "equivalent: same as run_policy__mutmut_15",
    "shared.backtest.x_run_backtest__mutmut_161": (
        "equivalent: with k == 0 (no bar evaluated) `has` is all False, so np.where never "
        "picks the placeholder"
    ),
    "shared.backtest.x_run_backtest__mutmut_172": "equivalent: same as run_backtest__mutmut_161",
    "shared.backtest.x_run_backtest__mutmut_177": (
        "equivalent: `exited` is only tested for truth; None is falsy like False"
    ),
    "shared.backtest.x_run_backtest__mutmut_203": "equivalent: same as rebalance__mutmut_28 (-2)",
    "shared.backtest.x_run_backtest__mutmut_206": "equivalent: same as rebalance__mutmut_28 (+2)",
    "shared.backtest.x_run_backtest__mutmut_204": (
        "equivalent: last_q == 0 never reaches the exit (`qty_s[-1] != 0.0` above)"
    ),
    "shared.backtest.x_run_backtest__mutmut_83": (
        "equivalent: change, opens and tl are built from the same index array, equal lengths"
    ),
    "shared.backtest.x_run_backtest__mutmut_87": "equivalent: same as run_backtest__mutmut_83",
    "shared.backtest.x_run_backtest__mutmut_88": "equivalent: same as run_backtest__mutmut_83",
    # shared/loaded_model.py (LoadedModel, moved out of shared/manifest.py unchanged: the same
    # judgements under the new names, each held to the diff it was judged on)
    "shared.loaded_model.xǁLoadedModelǁ_target__mutmut_11": (
        "equivalent: starting the argmax loop at 0 first compares out[0] with itself (not >)"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide__mutmut_2": (
        "equivalent: np.asarray of a float32 array with dtype float32 is the same array"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide__mutmut_20": (
        "equivalent: numpy (2.4, checked) treats any negative reshape size as 'infer', so "
        "reshape(1, -2) == reshape(1, -1)"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide__mutmut_37": (
        "equivalent: same as decide__mutmut_20 (reshape(-2) == reshape(-1))"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide__mutmut_30": (
        "equivalent: same as decide__mutmut_20 (the gated path's reshape(-2) == reshape(-1))"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide__mutmut_33": (
        "equivalent: same as decide__mutmut_20 (the observation handed to the gate: "
        "reshape(-2) == reshape(-1))"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_13": (
        "equivalent: np.empty is float64 by default"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_15": (
        "equivalent: np.empty is float64 by default"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_19": (
        "equivalent: x.shape[1] is the observation size (> 1), so the test becomes "
        "`not batchable`; a single row then takes the batch path: one call, the same target"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_23": (
        "equivalent: np.array of Python floats is float64"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_25": (
        "equivalent: np.array of Python floats is float64"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_38": (
        "equivalent: np.array of Python floats is float64"
    ),
    "shared.loaded_model.xǁLoadedModelǁdecide_batch__mutmut_40": (
        "equivalent: np.array of Python floats is float64"
    ),
    "shared.backtest.x_run_backtest__mutmut_212": (
        "equivalent: CostModel.commission takes the quantity's absolute value"
    ),
    "shared.backtest.x_run_backtest__mutmut_243": (
        "equivalent: a list of Python floats (or an empty list) makes a float64 array"
    ),
    "shared.backtest.x_run_backtest__mutmut_245": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_274": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_276": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_280": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_282": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_286": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_288": "equivalent: same as run_backtest__mutmut_243",
    "shared.backtest.x_run_backtest__mutmut_248": (
        "equivalent: the dict's keys are FILL_COLUMNS in order, so DataFrame keeps that order"
    ),
    "shared.backtest.x_run_backtest__mutmut_250": "equivalent: same as run_backtest__mutmut_248",
    "shared.backtest.x_run_backtest__mutmut_263": (
        "equivalent: no fill has quantity 0 (only dq != 0 and a non-zero exit are recorded)"
    ),
    "shared.loaded_model.xǁLoadedModelǁoutputs__mutmut_15": (
        "equivalent: same as decide__mutmut_20 (reshape(1, -2) == reshape(1, -1))"
    ),
    "shared.loaded_model.xǁLoadedModelǁoutputs__mutmut_32": (
        "equivalent: same as decide__mutmut_20 (reshape(n, -2) == reshape(n, -1))"
    ),
    "shared.backtest.x_round_trips__mutmut_98": (
        "equivalent: the zipped lists are columns of one frame, equal lengths"
    ),
    "shared.backtest.x_round_trips__mutmut_100": "equivalent: same as round_trips__mutmut_98",
    "shared.backtest.x_round_trips__mutmut_101": "equivalent: same as round_trips__mutmut_98",
    "shared.backtest.x_round_trips__mutmut_103": (
        "accepted: `<` vs `<=` eps (1e-9 shares) differs only for a position of exactly 1e-9, "
        "the boundary of a float-dust tolerance (as in accounting's apply_fill)"
    ),
    "shared.backtest.x_round_trips__mutmut_191": "accepted: same dust boundary (new_pos == eps)",
    "shared.backtest.x_round_trips__mutmut_210": "accepted: same dust boundary (rest == eps)",
    "shared.backtest.x_round_trips__mutmut_212": "accepted: same dust boundary (rest == eps)",
    "shared.backtest.x_round_trips__mutmut_228": "accepted: same dust boundary (|pos| == eps)",
    "shared.backtest.x_round_trips__mutmut_116": (
        "equivalent for the fills the backtester writes: no fill has quantity 0 (a 0 fill "
        "against a position would divide 0 by 0 in the original)"
    ),
    "shared.backtest.x_round_trips__mutmut_119": (
        "equivalent: pos is never 0 here (|pos| <= eps took the opening branch above)"
    ),
    "shared.backtest.x_round_trips__mutmut_195": "equivalent: same as round_trips__mutmut_119",
    "shared.backtest.x_round_trips__mutmut_192": (
        "equivalent: new_pos == 0 is caught by `abs(new_pos) <= eps` first"
    ),
    "shared.backtest.x_round_trips__mutmut_166": (
        "equivalent: trip['side'] is exactly +1.0 or -1.0, and x / +-1.0 == x * +-1.0"
    ),
    "shared.backtest.x_round_trips__mutmut_233": "equivalent: same as round_trips__mutmut_166",
    "shared.backtest.x_round_trips__mutmut_205": (
        "equivalent: rest is only compared with eps; on a flip both sums are > eps, on an "
        "exact close the extra trip opened with quantity ~0 is overwritten by the next "
        "opening fill (|pos| <= eps) and never recorded at the end (|pos| <= eps)"
    ),
    "shared.backtest.x_round_trips__mutmut_209": (
        "equivalent: on an exact close pos becomes new_pos (0 or dust <= eps) instead of 0.0: "
        "both open the next trade on the next fill and are not marked at the end"
    ),
    "shared.backtest.x_round_trips__mutmut_28": (
        "equivalent: open_trip always gets a non-zero quantity (a fill, or a flip's remainder "
        "> eps), so `>= 0` and `> 0` agree"
    ),
    "shared.backtest.x_round_trips__mutmut_57": (
        "equivalent: trip['side'] is +1.0 or -1.0, never 0"
    ),
    "shared.backtest.x_round_trips__mutmut_66": (
        "equivalent: close_trip runs after at least one closing quantity (> 0) was added to "
        "exit_qty, so the NaN branch is unreachable"
    ),
    "shared.backtest.x_round_trips__mutmut_74": "equivalent: same as round_trips__mutmut_66",
    "shared.backtest.x_round_trips__mutmut_77": (
        "equivalent for positive prices: notional = entry price x peak quantity > 0"
    ),
    "shared.backtest.x_round_trips__mutmut_79": "equivalent: same as round_trips__mutmut_77",
    # shared/features.py after the regime hook (87a4330) and the online %B edit
    # (1b6f5ca): the same judgements under mutmut's new numbering, and the regime hook's two
    "shared.features.x__batch__mutmut_231": (
        "equivalent: astype(None) means float64 in numpy, and the stack is float64 already"
    ),
    "shared.features.x__batch__mutmut_232": (
        "equivalent: copy only decides whether a fresh array is made; column_stack's result "
        "is a new array nobody else holds"
    ),
    "shared.features.x__batch__mutmut_234": ("equivalent: same as _batch__mutmut_232"),
    "shared.features.x__batch__mutmut_236": ("equivalent: same as _batch__mutmut_232"),
    "shared.features.x__batch__mutmut_237": (
        "equivalent: assigning None into a float64 array stores NaN"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_128": ("equivalent: _prev_high is never read"),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_129": ("equivalent: _prev_low is never read"),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_168": (
        "accepted: same as _batch__mutmut_86 (online %B threshold at exact equality)"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_209": (
        "accepted: same as _batch__mutmut_185 (online: rl == 0 < rs)"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_218": (
        "equivalent: the row is a list of Python floats, which np.array makes float64"
    ),
    "shared.features.xǁOnlineFeaturesǁupdate__mutmut_220": (
        "equivalent: same as update__mutmut_218"
    ),
    # services/inference/service.py (decision path, SCOPE in scripts/mutate_config.py)
    "inference.service.xǁInferenceServiceǁ_features__mutmut_6": (
        "equivalent: OnlineFeatures.update reads no open price (deleted unread; as "
        "shared.features' update_many__mutmut_17)"
    ),
    "inference.service.xǁInferenceServiceǁ_reset_symbol__mutmut_1": (
        "equivalent since 81a5c8a: no caller has a bar of the symbol queued: _epoch_changed "
        "flushes it first, a released symbol is flushed by the membership, an acquired one "
        "was not served, and a model swap or a pipeline mismatch follows a flushed batch (a "
        "ModelUpdated flushes before it is applied)"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_decide__mutmut_1": (
        "equivalent: every caller passes breaks explicitly; the default is never used"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_26": (
        "equivalent: symbols, rows and breaks are built from the same kept indices, equal "
        "lengths, so zip's strict cannot matter"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_30": (
        "equivalent: same as _shadow_batch__mutmut_26"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_31": (
        "equivalent: same as _shadow_batch__mutmut_26"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_34": (
        "equivalent: the shadow returns one target per symbol (batched or row by row), as "
        "many as bars, so zip's strict cannot matter"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_37": (
        "equivalent: same as _shadow_batch__mutmut_34"
    ),
    "inference.service.xǁInferenceServiceǁ_shadow_batch__mutmut_38": (
        "equivalent: same as _shadow_batch__mutmut_34"
    ),
    # services/inference/batching.py (the receive batch, moved out of service.py unchanged:
    # the same judgements under the new names, each held to the diff it was judged on)
    "inference.batching.xǁDecisionBatchǁobservations__mutmut_3": (
        "equivalent: the positions are Python floats, which np.asarray makes float64 without "
        "the dtype (and build_observations converts to float64 again)"
    ),
    "inference.batching.xǁDecisionBatchǁobservations__mutmut_5": (
        "equivalent: same as observations__mutmut_3 (the dtype argument dropped)"
    ),
    "inference.batching.xǁDecisionBatchǁobservations__mutmut_15": (
        "equivalent: with axis=None the mask is one flag for the whole batch: a non-finite "
        "value anywhere sends the batch to the row-by-row fallback, which refuses exactly the"
        " non-finite rows and builds the others identically (a NaN row failing alone is "
        "tested)"
    ),
    "inference.batching.xǁDecisionBatchǁclear__mutmut_1": (
        "equivalent: after clear() the batch is empty; flushing an empty batch decides and "
        "publishes nothing whatever its model, and on_bar's extra flush of that empty batch "
        "is a no-op before add() sets the model"
    ),
    "inference.batching.xǁBatchedDecisionsǁflush_batch__mutmut_2": (
        "equivalent: flush_batch runs only while handle_batch holds a batch (its other caller"
        " checks _batch), so `batch is None` is always false; an empty batch (model None) "
        "then decides and publishes nothing either way"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_10": (
        "equivalent: bars, rows and positions are appended together by DecisionBatch.add, "
        "equal lengths, so zip's strict cannot matter"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_14": (
        "equivalent: same as _batch_observations__mutmut_10"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_15": (
        "equivalent: same as _batch_observations__mutmut_10"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_28": (
        "equivalent: the empty array is returned only when every row was refused; then no bar"
        " is kept and it is never read (its dtype cannot matter)"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_30": (
        "equivalent: same as _batch_observations__mutmut_28"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_31": (
        "equivalent: same as _batch_observations__mutmut_28 (its shape)"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_observations__mutmut_32": (
        "equivalent: same as _batch_observations__mutmut_28 (its shape)"
    ),
    "inference.batching.xǁBatchedDecisionsǁflush_batch__mutmut_34": (
        "equivalent: states and bars come from the same batch (or the same kept indices), "
        "equal lengths, so zip's strict cannot matter"
    ),
    "inference.batching.xǁBatchedDecisionsǁflush_batch__mutmut_37": (
        "equivalent: same as flush_batch__mutmut_34"
    ),
    "inference.batching.xǁBatchedDecisionsǁflush_batch__mutmut_38": (
        "equivalent: same as flush_batch__mutmut_34"
    ),
    "inference.batching.xǁBatchedDecisionsǁhandle_batch__mutmut_5": (
        "equivalent: the one-bar shortcut (a speed path) is then never taken; the batch path "
        "decides and publishes the same (a single queued row is decided alone, not counted as"
        " a batched call) and counts and logs a failure with the same topic"
    ),
    "inference.batching.xǁBatchedDecisionsǁon_bar__mutmut_14": (
        "equivalent: the original clause is never true (within a receive batch the live model "
        "changes only through a ModelUpdated message, which flushes the batch first, so a "
        "queued batch's model is the live one); the mutant's clause is true only for an empty "
        "batch (queue() sets the model, clear() resets both), whose flush is a no-op"
    ),
    "inference.batching.xǁDecisionBatchǁadd__mutmut_1": (
        "equivalent: add() runs only inside flush_batch (_batch_features), after queue() set "
        "the batch's model and flush_batch read it into a local; the batch's model is not "
        "read again before clear() resets it"
    ),
    "inference.batching.xǁDecisionBatchǁadd__mutmut_6": (
        "equivalent: add() is called only for a queued state, whose symbol queue() already put "
        "in `symbols`; an extra None is never a symbol looked up there, and clear() resets it"
    ),
    "inference.batching.xǁBatchedDecisionsǁflush_batch__mutmut_6": (
        "equivalent: _batch_features passes the model only to DecisionBatch.add (as "
        "add__mutmut_1: the batch's model is not read again before clear())"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_features__mutmut_29": (
        "equivalent: same as flush_batch__mutmut_6"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_features__mutmut_11": (
        "equivalent: update_features returns one row and one error per input (lists of the "
        "queue's length), so zip's strict cannot matter"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_features__mutmut_15": (
        "equivalent: same as _batch_features__mutmut_11"
    ),
    "inference.batching.xǁBatchedDecisionsǁ_batch_features__mutmut_16": (
        "equivalent: same as _batch_features__mutmut_11"
    ),
    # shared/backtest_risk.py (execution's stop and daily-loss halt in the backtester)
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_11": (
        "equivalent for numbers: every read of the open goes through float(), which gives the "
        "same value from an int, float32 or float64 column"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_15": (
        "equivalent for numbers: same as __init____mutmut_11 (the close)"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_35": (
        "equivalent: the first observe (the decision for bar 1) sees day days[0]; a different "
        "starting day only resets the day's baseline to last_equity, still the initial cash: "
        "the same baseline"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_36": (
        "equivalent: same as __init____mutmut_35 (starting day 0)"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_40": (
        "equivalent: same as __init____mutmut_35 (starting day 1 for an empty slice, which "
        "decides nothing)"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_42": (
        "equivalent: same as __init____mutmut_35 (starting day None)"
    ),
    "shared.backtest_risk.xǁRiskBookǁ__init____mutmut_48": (
        "equivalent: reasons is read only by forced(), which counts 'stop' and 'daily_loss'; "
        "a bar never forced keeps its placeholder, empty or not"
    ),
    "shared.backtest_risk.xǁRiskBookǁdecide__mutmut_6": (
        "equivalent: `forced` is only tested for truth (and stored when true); None is falsy "
        "like ''"
    ),
    "shared.backtest_risk.x_apply_risk_rules__mutmut_18": (
        "equivalent: the targets are 1-d (run_backtest checked the shape (n,); 2-d targets "
        "fail in float() first), `out` has one entry per target, and reshape(None) keeps it"
    ),
    "shared.backtest_risk.x_apply_risk_rules__mutmut_19": (
        "equivalent: np.array of Python floats is already float64, and astype(None) is float64"
    ),
    "shared.backtest_risk.x_manifest_risk_rules__mutmut_5": (
        'equivalent: a missing provenance gives None, and `None or ""` is "" as before'
    ),
    "shared.backtest_risk.x_manifest_risk_rules__mutmut_11": (
        'equivalent: a missing provenance gives "XXXX", not JSON: None, as the empty '
        "provenance's {} without rules gives"
    ),
    "shared.backtest_risk.x_manifest_risk_rules__mutmut_12": (
        'equivalent: an empty provenance becomes "XXXX", not JSON: None, as {} gives'
    ),
    "shared.backtest_risk.x_manifest_risk_rules__mutmut_15": (
        'equivalent: json.loads("") raises ValueError: None, as {} gives'
    ),
    # shared/regime_gate.py (the regime-gated position cap inside LoadedModel)
    "shared.regime_gate.xǁRegimeGateǁprobabilities__mutmut_3": (
        "equivalent: the z-scores are multiplied by the float64 std and added to the float64 "
        "mean, so a float32 (or int) observation is promoted to float64 exactly: the same "
        "probabilities"
    ),
    "shared.regime_gate.xǁRegimeGateǁprobabilities__mutmut_5": (
        "equivalent: same as probabilities__mutmut_3 (no dtype)"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_7": (
        "equivalent: same as probabilities__mutmut_3 (the batch: x[:, columns] * std + mean is "
        "float64 whatever the observation's dtype)"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_9": (
        "equivalent: same as apply_rows__mutmut_7 (no dtype)"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_11": (
        "equivalent: numpy (2.4, checked) treats any negative reshape size as 'infer', so "
        "reshape(n, -2) == reshape(n, -1)"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_23": (
        "equivalent: probs has exactly len(targets) rows (x was reshaped to (len(targets), "
        "-1)), so zip never sees lengths that differ and strict changes nothing"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_26": (
        "equivalent: same as apply_rows__mutmut_23 (no strict)"
    ),
    "shared.regime_gate.xǁRegimeGateǁapply_rows__mutmut_27": (
        "equivalent: same as apply_rows__mutmut_23 (strict=False)"
    ),
    # shared/env_risk.py (the stop / daily-loss arithmetic the env and the backtester share)
    "shared.env_risk.x_day_ids__mutmut_8": (
        'equivalent: pandas (3.1, checked) maps "utc" to the same UTC zone as "UTC"'
    ),
    "shared.env_risk.x_day_ids__mutmut_17": (
        "equivalent: asi8 // int is already an int64 array, so asarray without dtype=int64 keeps it"
    ),
    "shared.env_risk.x_day_ids__mutmut_19": "equivalent: same as day_ids__mutmut_17 (no dtype)",
    "shared.env_risk.x_day_ids__mutmut_20": (
        "equivalent: a local midnight in ns is N * 86400e9 = N * 1318359375 * 2**16, exact in "
        "float64 for |N| < 6.8e6 days, so / gives N exactly and the int64 cast equals //; "
        "checked for every day of pandas' ns range (1677-2262)"
    ),
    "shared.env_risk.xǁRiskStateǁafter_fill__mutmut_7": (
        "equivalent: old_qty == 0 is taken by the first clause, so here old_qty >= 0 is old_qty > 0"
    ),
    "shared.env_risk.xǁRiskStateǁafter_fill__mutmut_10": (
        "equivalent: new_qty == 0 is taken by the first branch (the stop is dropped), so here "
        "new_qty >= 0 is new_qty > 0"
    ),
    # services/execution/order_journal.py: the fast path (0784737)
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_8": (
        "equivalent: _in_memory only skips mkdir (the parent of ':memory:' is '.', which "
        "exists) and makes checkpoint() return 0; without it checkpoint opens a fresh private "
        "':memory:' database whose wal_checkpoint reports (0, -1, -1), also 0"
    ),
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_9": (
        "equivalent: same as __init____mutmut_8 (':memory:' not recognised)"
    ),
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_11": (
        "equivalent: same as __init____mutmut_8 (':memory:' not recognised)"
    ),
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_12": (
        "equivalent: same as __init____mutmut_8 (':memory:' not recognised)"
    ),
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_26": (
        "equivalent: every call on the writing connection runs on the thread that opened it "
        "(the service's event loop); the one worker-thread call, checkpoint(), uses a "
        "connection of its own"
    ),
    "execution.order_journal.xǁOrderJournalǁ__init____mutmut_28": (
        "equivalent: same as __init____mutmut_26 (check_same_thread=True)"
    ),
    "execution.order_journal.xǁOrderJournalǁcheckpoint__mutmut_7": (
        "equivalent: without isolation_level=None the sqlite3 module opens an implicit "
        "transaction only before INSERT/UPDATE/DELETE/REPLACE, and this connection runs PRAGMAs"
        " only"
    ),
    "execution.order_journal.xǁOrderJournalǁcheckpoint__mutmut_22": (
        "equivalent: the journal is in WAL mode (set at open), so wal_checkpoint reports >= 0 "
        "checkpointed pages and int(row[2]) is what the guard returns; only a non-WAL -1 would "
        "differ"
    ),
    "execution.order_journal.xǁOrderJournalǁcheckpoint__mutmut_25": (
        "equivalent: same as checkpoint__mutmut_22 (the row always exists; row[2] >= 0 in WAL mode)"
    ),
    "execution.order_journal.xǁOrderJournalǁcheckpoint__mutmut_27": (
        "equivalent: at row[2] == 0 both return 0"
    ),
    "execution.order_journal.xǁOrderJournalǁcheckpoint__mutmut_28": (
        "accepted: differs only when exactly one WAL page is checkpointed (1 vs 0); the service"
        " discards the count (await asyncio.to_thread(self.journal.checkpoint)) and a one-page "
        "transaction cannot be made through the journal's API (every write touches a table page"
        " and an index page)"
    ),
    # shared/sizing.py (THE sizing rule: execution, env, backtest and evaluation)
    "shared.sizing.xǁWilderATRǁ__init____mutmut_12": (
        "equivalent: the previous close is read only from the second accepted bar on, after the"
        " first has set it"
    ),
    "shared.sizing.x_atr_series__mutmut_6": (
        "equivalent for numbers: tolist() of an int / float32 / float64 column gives Python "
        "ints or floats whose WilderATR arithmetic (differences, max, mean) is exact-equal to "
        "the float64 path for prices <= MAX_PRICE < 2**53"
    ),
    "shared.sizing.x_atr_series__mutmut_8": (
        "equivalent for numbers: same as atr_series__mutmut_6 (the dtype argument dropped)"
    ),
    "shared.sizing.x_atr_series__mutmut_11": (
        "equivalent for numbers: same as atr_series__mutmut_6 (the low column)"
    ),
    "shared.sizing.x_atr_series__mutmut_13": (
        "equivalent for numbers: same as atr_series__mutmut_6 (the low column, no dtype)"
    ),
    "shared.sizing.x_atr_series__mutmut_16": (
        "equivalent for numbers: same as atr_series__mutmut_6 (the close column)"
    ),
    "shared.sizing.x_atr_series__mutmut_18": (
        "equivalent for numbers: same as atr_series__mutmut_6 (the close column, no dtype)"
    ),
    "shared.sizing.x_full_size__mutmut_7": (
        "equivalent: equity 0 passes the guard but floors 0 x risk / stop = 0 shares, what the "
        "guard returns"
    ),
    "shared.sizing.x_clip_to_gross_exposure__mutmut_8": (
        "equivalent: at exactly the limit |t| x price + other == max, room = floor((max - "
        "other) / price) = |t|, so nothing is clipped"
    ),
    "shared.sizing.x_clip_to_gross_exposure__mutmut_22": (
        "equivalent: `target >= 0` differs only at target 0, and a zero target is never clipped"
        " (|0| > allowed is false for allowed >= 0)"
    ),
    "shared.sizing.x_clip_to_gross_exposure__mutmut_25": (
        "equivalent: `current >= 0` differs only at current 0, already excluded by `current != 0`"
    ),
    "shared.sizing.x_clip_to_gross_exposure__mutmut_36": (
        "equivalent: at |target| == allowed the clip returns copysign(allowed, target) == target"
    ),
    "shared.sizing.x_clip_to_gross_exposure__mutmut_38": (
        "equivalent: with allowed 0, int(copysign(0, target)) is 0, what the else gives"
    ),
    "shared.sizing.x_within_rebalance_threshold__mutmut_8": (
        "equivalent: `target >= 0` differs only at target 0, already excluded by `target != 0`"
    ),
    "shared.sizing.x_within_rebalance_threshold__mutmut_11": (
        "equivalent: `held >= 0` differs only at held 0, already excluded by `held != 0`"
    ),
    "shared.sizing.x_position_after__mutmut_25": (
        "equivalent: at |target| == max_position the cap gives copysign(max_position, target) "
        "== target"
    ),
    "shared.sizing.x_position_after__mutmut_26": (
        "equivalent: unreachable cap: |target| = round_half_away(f x full) with |f| <= 1 and "
        "full <= max_position (an integer) is never above max_position"
    ),
    "shared.sizing.x_position_after__mutmut_27": (
        "equivalent: same as position_after__mutmut_26 (unreachable cap)"
    ),
    "shared.sizing.x_position_after__mutmut_28": (
        "equivalent: same as position_after__mutmut_26 (unreachable cap)"
    ),
    "shared.sizing.x_position_after__mutmut_29": (
        "equivalent: same as position_after__mutmut_26 (unreachable cap)"
    ),
    "shared.sizing.x_position_after__mutmut_30": (
        "equivalent: same as position_after__mutmut_26 (unreachable cap)"
    ),
    "shared.sizing.x_position_after__mutmut_31": (
        "equivalent: same as position_after__mutmut_26 (unreachable cap)"
    ),
    "shared.sizing.x_full_size_array__mutmut_20": (
        "equivalent: the inner where's value for a cold row is discarded by the outer "
        "np.where(warm, ..., 0.0)"
    ),
    "shared.sizing.x_full_size_array__mutmut_21": (
        "equivalent: a cold row's stop is replaced by the fallback on the next line"
    ),
    "shared.sizing.x_full_size_array__mutmut_36": (
        "equivalent: equity 0 passes but floors 0 x risk / stop = 0 shares, what the guard gives"
    ),
    "shared.sizing.x_full_size_array__mutmut_40": (
        "equivalent: the divisor is np.where(ok, stop, 1.0), never 0, so no divide warning is "
        "raised either way (and warnings are not errors)"
    ),
    "shared.sizing.x_full_size_array__mutmut_41": (
        "equivalent: same as full_size_array__mutmut_40 (no 0/0 or inf-inf: the divisor is a "
        "positive finite stop or 1.0)"
    ),
    "shared.sizing.x_full_size_array__mutmut_42": (
        "equivalent: same as full_size_array__mutmut_40 (errstate without divide)"
    ),
    "shared.sizing.x_full_size_array__mutmut_43": (
        "equivalent: same as full_size_array__mutmut_41 (errstate without invalid)"
    ),
    "shared.sizing.x_full_size_array__mutmut_62": (
        "equivalent: the divisor of a not-ok row only fills a value np.where(ok, ..., 0.0) discards"
    ),
    "shared.sizing.x_full_size_array__mutmut_71": (
        "equivalent: an ok row has equity > 0 and stop > 0, so raw >= 0 and the lower clip "
        "bound never acts"
    ),
    "shared.sizing.x_position_after_array__mutmut_37": (
        "equivalent: unreachable clip: |round_half_away(f x full)| <= full <= max_position (|f|"
        " <= 1, full an integer)"
    ),
    "shared.sizing.x_position_after_array__mutmut_38": (
        "equivalent: same as position_after_array__mutmut_37 (the upper bound)"
    ),
    "shared.sizing.x_position_after_array__mutmut_46": (
        "equivalent: a row with price > 0 under the limit has |t| <= max / price, so |t| <= "
        "floor(max / price) = room <= allowed and nothing is clipped (no float counterexample "
        "in 2e6 random draws); price <= 0 is never over"
    ),
    "shared.sizing.x_position_after_array__mutmut_47": (
        "equivalent: at price 0, |t| x 0 > max_gross_exposure (> 0) is false anyway"
    ),
    "shared.sizing.x_position_after_array__mutmut_51": (
        "equivalent: at exactly the limit room = floor(max / price) = |t|, so nothing is clipped"
    ),
    "shared.sizing.x_position_after_array__mutmut_52": (
        "equivalent: the divisor is np.where(price > 0, price, 1.0), never 0, so no divide "
        "warning is raised either way (and warnings are not errors)"
    ),
    "shared.sizing.x_position_after_array__mutmut_53": (
        "equivalent: same as position_after_array__mutmut_52 (no invalid operation: max / a "
        "positive divisor)"
    ),
    "shared.sizing.x_position_after_array__mutmut_54": (
        "equivalent: same as position_after_array__mutmut_52 (errstate without divide)"
    ),
    "shared.sizing.x_position_after_array__mutmut_55": (
        "equivalent: same as position_after_array__mutmut_53 (errstate without invalid)"
    ),
    "shared.sizing.x_position_after_array__mutmut_74": (
        "equivalent: a price-0 row's room (now inf) is never used: `over` is false at price 0"
    ),
    "shared.sizing.x_position_after_array__mutmut_76": (
        "equivalent: a non-positive price's room is never used: `over` is false there"
    ),
    "shared.sizing.x_position_after_array__mutmut_81": (
        "equivalent: `target >= 0` differs only at target 0, which is never over the limit, so "
        "never clipped"
    ),
    "shared.sizing.x_position_after_array__mutmut_84": (
        "equivalent: `held >= 0` differs only at held 0, already excluded by `held != 0`"
    ),
    "shared.sizing.x_position_after_array__mutmut_107": (
        "equivalent: at |target| == allowed, copysign(allowed, target) == target"
    ),
    "shared.sizing.x_position_after_array__mutmut_122": (
        "equivalent: `target >= 0` differs only at target 0, already excluded by `target != 0`"
    ),
    "shared.sizing.x_position_after_array__mutmut_125": (
        "equivalent: `held >= 0` differs only at held 0, already excluded by `held != 0`"
    ),
    # services/inference/sharding.py (rendezvous assignment, hand-over, self-fence; SCOPE)
    "inference.sharding.x_score__mutmut_10": (
        "equivalent: int.from_bytes's byteorder defaults to 'big' since Python 3.11 (the project "
        "requires >= 3.11), so the score is the same number"
    ),
    "inference.sharding.xǁShardingǁnote_signal__mutmut_1": (
        "equivalent: `>=` differs only when close_ts equals the stored one, and then it stores "
        "the same value again"
    ),
    "inference.sharding.xǁShardingǁnote_signal__mutmut_7": (
        "equivalent: a default of -2 instead of -1 differs only for close_ts == -1; every close "
        "ts noted is a validated bar's ts_event or a validated signal's bar_close_ts, both "
        ">= MIN_TS_NS = 0 (shared/validate.py); ts 0 is recorded (killed by a test)"
    ),
    "inference.sharding.xǁShardingǁreconcile__mutmut_32": (
        "equivalent: `>=` differs only for a claiming peer whose score equals this replica's: "
        "`others` never holds this replica itself (on_heartbeat drops its own heartbeats), and "
        "two distinct replica ids tie on a 64-bit blake2b score with probability 2**-64 per "
        "symbol (no such pair can be constructed for a test)"
    ),
    # shared/feature_bank.py (the online features of a receive batch in one numpy pass)
    "shared.feature_bank.x__logs__mutmut_3": (
        "equivalent: np.fromiter's dtype None is float64 (np.dtype(None)), the dtype given"
    ),
    "shared.feature_bank.x__logs__mutmut_7": (
        "equivalent: the count only preallocates; the iterator yields exactly x.size logs "
        "either way"
    ),
    "shared.feature_bank.xǁBankedFeaturesǁupdate__mutmut_4": (
        "equivalent: OnlineFeatures.update reads no open price (as shared.features' "
        "update_many__mutmut_17)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_adopt__mutmut_2": (
        "equivalent: an assertion that never fails in either form: _adopt is called only for "
        "a handle with its own OnlineFeatures (update_batch checks `online is not None`), "
        "made from this bank's config (BankedFeatures.__init__, _export)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_leave__mutmut_1": (
        "equivalent: same as _adopt__mutmut_2: both callers leave only a banked handle "
        "(`online is None`), whose finalizer _adopt set"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_leave__mutmut_7": (
        "equivalent: a handle's slot is read only while it is banked (`online is None`: "
        "bars_seen, atr, update_batch), and _adopt sets it again before that"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_leave__mutmut_8": ("equivalent: same as _leave__mutmut_7"),
    "shared.feature_bank.xǁFeatureBankǁ_leave__mutmut_9": ("equivalent: same as _leave__mutmut_7"),
    "shared.feature_bank.xǁFeatureBankǁ_leave__mutmut_10": (
        "equivalent: the finalizer is read only by _leave's assertion, for a banked handle, "
        "whose finalizer _adopt set again"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_export__mutmut_20": (
        "equivalent: zip over two literal 4-tuples: equal lengths, strict cannot matter"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_export__mutmut_23": (
        "equivalent: same as _export__mutmut_20"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_export__mutmut_24": (
        "equivalent: same as _export__mutmut_20"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_2": (
        "equivalent: when every bar of the batch is warm, `done` is arange(K), so indexing "
        "with it reads the same values as the slice (which only saves copies); the results "
        "are new arrays either way"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_19": (
        "accepted: the re-anchor heuristic at exact equality m*m == 16*var (as "
        "shared.features' _Rolling.std__mutmut_10)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_23": (
        "accepted: the heuristic's |m| > 1e-12 |anchor| at exact equality (as "
        "shared.features' _Rolling.std__mutmut_14)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_30": (
        "equivalent: None assigned into a bool array stores False"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_47": (
        "accepted: right after a re-anchor m is the exact sum of the deviations from the "
        "window's rounded mean over n (about one ulp of the mean), so m*n^2 squared still "
        "sits below var's last bit except for a window whose std is below ~1e-6 of its mean "
        "right after a level jump made its anchor stale; no packaged or hostile series has "
        "one (as shared.features' _Rolling.std__mutmut_20)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_50": (
        "accepted: same as _rows__mutmut_47 (+ m*m instead of - m*m right after a re-anchor)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_62": (
        "equivalent: sqrt(0.0) == 0.0 (and a -0.0 std compares and subtracts as 0.0 in every use)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_107": (
        "accepted: same as shared.features' _batch__mutmut_86 (the %B zero-width cut-off at "
        "exact equality; its sides are tested in test_mutation_kills_feature_bank.py)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_rows__mutmut_162": (
        "accepted: same as shared.features' _batch__mutmut_185 (rl == 0 < rs)"
    ),
    "shared.feature_bank.xǁBankedFeaturesǁ__init____mutmut_4": (
        "equivalent: same as _leave__mutmut_7 (the slot of a handle not yet banked is never "
        "read; _adopt sets it)"
    ),
    "shared.feature_bank.xǁBankedFeaturesǁ__init____mutmut_5": (
        "equivalent: same as __init____mutmut_4"
    ),
    "shared.feature_bank.xǁBankedFeaturesǁ__init____mutmut_6": (
        "equivalent: same as __init____mutmut_4"
    ),
    "shared.feature_bank.xǁBankedFeaturesǁ__init____mutmut_7": (
        "equivalent: same as _leave__mutmut_10 (the finalizer is read only for a banked "
        "handle, after _adopt set it)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_1": (
        "equivalent: the initial capacity only decides when the arrays double; slots are "
        "handed out in the same order and every read is of a used slot"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_14": (
        "equivalent: the template only gives constants (the EWM coefficients, bb_dev, the six"
        " window sizes), none of which the regime block changes; a regime config is not "
        "vectorised at all"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_26": (
        "equivalent: return_horizons are Python ints, which np.asarray makes int64 (intp on "
        "this 64-bit platform)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_28": (
        "equivalent: same as __init____mutmut_26"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_43": (
        "equivalent: the window sizes are small ints: as int64 they compare and divide (true "
        "division promotes to float64) exactly as the float64 sizes"
    ),
    "shared.feature_bank.xǁFeatureBankǁ__init____mutmut_45": (
        "equivalent: same as __init____mutmut_43"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_adopt__mutmut_6": (
        "detected, not a survivor: the test run crashed (segfault): a full bank never grows, "
        "so its rows are written past the arrays"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_load__mutmut_21": (
        "equivalent: zip over two literal 6-tuples: equal lengths, strict cannot matter"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_load__mutmut_24": ("equivalent: same as _load__mutmut_21"),
    "shared.feature_bank.xǁFeatureBankǁ_load__mutmut_25": ("equivalent: same as _load__mutmut_21"),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_7": (
        "equivalent: the bars are tuples of Python floats (Bar's float fields), which "
        "np.array makes float64"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_9": (
        "equivalent: same as _update_banked__mutmut_7"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_16": (
        "accepted: errstate(all=None) leaves numpy's policy as it is (warn), so a NaN/inf "
        "bar's comparisons may print a RuntimeWarning; every value and refusal is the same"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_73": (
        "equivalent: _advance returns one block row per index in done, equal lengths, so "
        "zip's strict cannot matter"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_76": (
        "equivalent: same as _update_banked__mutmut_73"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_update_banked__mutmut_77": (
        "equivalent: same as _update_banked__mutmut_73"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_4": (
        "equivalent: slots are Python ints, which np.array makes int64 (intp here)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_6": (
        "equivalent: same as _advance__mutmut_4"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_9": (
        "equivalent: consecutive slots then take the copy path (state[:, slots], written back"
        " at the end) instead of a view: the same values (the view is a speed path)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_14": (
        "equivalent: true only for consecutive slots starting at 0 (else the copy path, as "
        "_advance__mutmut_9)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_15": (
        "equivalent: never true for a non-empty batch: always the copy path (as _advance__mutmut_9)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_16": (
        "equivalent: same as _advance__mutmut_15"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_63": (
        "equivalent: for diff == 0 both give 0.0 (diff itself), and a NaN diff (the first "
        "bar) fails both comparisons"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_72": (
        "equivalent: for diff == 0 the down input is -0.0 instead of 0.0: it compares equal "
        "(the EWM keeps its value) and b*ewm + a*(-0.0) == b*ewm + a*0.0 for every ewm; a NaN"
        " diff fails both comparisons"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_82": (
        "equivalent: den = (1 - alpha) + alpha is exactly 1.0 for every window 2..59 as 1/n "
        "and 2/(n+1) (checked), so * den == / den"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_121": (
        "equivalent: same as _advance__mutmut_82 (the signal EWM's den)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_136": (
        "equivalent: before the macd_slow-th bar SIG is never read (rows start after the "
        "warm-up, which is at least macd_slow bars), the macd_slow-th bar sets it to macd, "
        "and an export before then sets nobs 0, whose first push overwrites the value"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_173": (
        "equivalent: ATR starts NaN (OnlineFeatures._atr = nan), so the Wilder step while "
        "seeding keeps it NaN, as the original keeps it; the seed (mean of the first n) "
        "overwrites it at seen == n - 1"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_174": (
        "equivalent: same as _advance__mutmut_173 (None stored in a float array is NaN, the "
        "value it had)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_214": (
        "equivalent: an all-False `first` makes _push_windows' skip mask all False: no value "
        "changes (passing None only skips that work)"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_advance__mutmut_224": (
        "equivalent: _rows with no warm bar returns a (0, names) block, the shape of the "
        "empty block returned otherwise; its stale mask is empty"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_push_windows__mutmut_74": (
        "equivalent: a float64 mask of 0.0 / 1.0 selects in np.where exactly as the bool one"
    ),
    "shared.feature_bank.xǁFeatureBankǁ_push_windows__mutmut_76": (
        "equivalent: same as _push_windows__mutmut_74"
    ),
    "shared.feature_bank.x_update_features__mutmut_1": (
        "equivalent: the one-bank shortcut (a speed path) is then never taken; the grouped "
        "path calls the same update_batch with the same handles and bars in order"
    ),
    "shared.feature_bank.x_update_features__mutmut_2": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_4": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_10": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_11": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_15": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_20": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_21": (
        "equivalent: same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_22": (
        "equivalent: never true (features[0]'s bank is the bank): same as update_features__mutmut_1"
    ),
    "shared.feature_bank.x_update_features__mutmut_54": (
        "equivalent: update_batch returns one row and one error per handle, equal lengths, so"
        " zip's strict cannot matter"
    ),
    "shared.feature_bank.x_update_features__mutmut_58": (
        "equivalent: same as update_features__mutmut_54"
    ),
    "shared.feature_bank.x_update_features__mutmut_59": (
        "equivalent: same as update_features__mutmut_54"
    ),
    # shared/rebalancing.py (the one-bar accounting core, moved out of shared/backtest.py
    # unchanged: the same judgements under the new names, each held to the diff it was judged on)
    "shared.rebalancing.x_order_quantity__mutmut_2": (
        "equivalent: at equity 0 the size is trunc(target * rf * 0 / price) = +-0.0, the same "
        "no-position as the early 0.0 (-0.0 == 0.0 trades nothing)"
    ),
    "shared.rebalancing.x_rebalance__mutmut_28": (
        "equivalent: CostModel.fill_price reads only the sign of its side (+2 is a buy)"
    ),
    "shared.rebalancing.x_rebalance__mutmut_32": "equivalent: same as rebalance__mutmut_28 (-2)",
    "shared.rebalancing.x_rebalance__mutmut_29": (
        "equivalent: `dq >= 0` differs only at dq == 0, returned (no order) two lines above"
    ),
    "shared.rebalancing.x_resize__mutmut_38": "equivalent: same as rebalance__mutmut_28 (+2)",
    "shared.rebalancing.x_resize__mutmut_42": "equivalent: same as rebalance__mutmut_28 (-2)",
    "shared.rebalancing.x_resize__mutmut_39": "equivalent: same as rebalance__mutmut_29",
    "shared.rebalancing.x_resize__mutmut_6": (
        "equivalent: a NaN ATR handed on fails stop_distance's `atr > 0` exactly like None: "
        "the fallback stop either way"
    ),
    "shared.rebalancing.x_decision_refs__mutmut_9": (
        "equivalent: atr_series widens high/low/close to float64 itself, and the decision "
        "closes are written into float64 arrays: int or float32 columns widen exactly"
    ),
    # shared/feature_config.py (FeatureConfig, names, warm-up, fingerprint; moved out of
    # shared/features.py unchanged: the same judgements under the new names)
    "shared.feature_config.xǁFeatureConfigǁto_dict__mutmut_9": (
        "equivalent: msgspec.to_builtins writes every field of FeatureConfig (no "
        "omit_defaults), so 'regime' is always a key when this branch runs and pop needs no "
        "default"
    ),
    "shared.feature_config.x_warmup_bars__mutmut_32": (
        "equivalent: the max() also holds vol_long + 1 >= 2 (vol_long >= 1 is validated), so "
        "a 1 in place of the 0 for the absent regime block never wins"
    ),
    # shared/normaliser.py (Normaliser, moved out of shared/features.py unchanged: the same
    # judgements under the new names)
    "shared.normaliser.xǁNormaliserǁtransform__mutmut_4": (
        "equivalent: self.mean is float64, so the subtraction is float64 for any numeric input "
        "(int and float32 widen exactly)"
    ),
    "shared.normaliser.xǁNormaliserǁtransform__mutmut_7": "equivalent: same as transform__mutmut_4",
    "shared.normaliser.xǁNormaliserǁinverse__mutmut_4": (
        "equivalent: z is multiplied by the float64 std, so any int/float32 z widens exactly"
    ),
    "shared.normaliser.xǁNormaliserǁinverse__mutmut_6": "equivalent: same as inverse__mutmut_4",
}
