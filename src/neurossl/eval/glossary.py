"""What each metric of the vocabulary computes, in words, for the report's glossary.

Stated next to the code that computes the metrics so a convention (which null, which
neurons count) cannot change without its description; a test checks every metric of
:mod:`neurossl.names` has an entry.
"""

from __future__ import annotations

METRIC_GLOSSARY: dict[str, str] = {
    "bps": (
        "Bits per spike, NLB's convention (nlb_tools.evaluation.bits_per_spike): "
        "(NLL_null - NLL_model) / (n_spikes ln 2), pooled over every scored neuron, the "
        "null predicting each neuron's mean count over the scored bins. A neuron that "
        "never spikes in the scored bins still counts: its null rate is 0 (clamped to "
        "1e-9) and the model is charged for the rate it predicts. IBL BrainWideBench's "
        "BPS leaves such silent neurons out, so the two differ when a scored neuron is "
        "silent."
    ),
    "poisson_d2": (
        "Poisson D^2 in IBL BrainWideBench's convention (ibl_bwb_eval PoissonD2Score): "
        "each neuron's 1 - D(model) / D(null) over its scored bins, averaged over "
        "neurons, every neuron weighing the same. Neurons without a scored spike, or "
        "whose null deviance is below 1e-9, are left out; NaN when none is left."
    ),
    "poisson_d2_pooled": (
        "Poisson D^2 pooled over neurons: 1 - sum D(model) / sum D(null), the sums over "
        "every scored bin of every neuron, so high-rate neurons weigh more. Silent "
        "neurons add nothing to the null deviance and their predicted rate to the "
        "model's. Can order methods differently from poisson_d2."
    ),
    "r2": (
        "Coefficient of determination. Activity: per neuron over its scored entries, "
        "averaged over neurons; decoding: over every scored bin (behaviour) pooled. A "
        "neuron whose target is constant (spread within float32 rounding of its size) "
        "has no R^2 and is left out; NaN when none is left."
    ),
    "pearson": (
        "Pearson correlation of prediction and target per neuron, averaged over neurons; "
        "a neuron whose prediction or target is constant (within float32 rounding of its "
        "size) is left out, so a prediction with one value per neuron scores NaN."
    ),
    "mae": "Mean absolute error over every scored entry (pooled, not per neuron).",
    "mse": "Mean squared error over every scored entry (pooled, not per neuron).",
    "bacc": "Balanced accuracy: mean recall over the classes present in the test labels.",
    "acc": ("Accuracy (for natural-movie frames: within frame_delta frames of the true frame)."),
    "frozen_bacc": "bacc of a linear probe (logistic regression) on the frozen backbone.",
    "frozen_acc": "acc of a linear probe (logistic regression) on the frozen backbone.",
    "frozen_r2": "r2 of a linear probe (ridge) on the frozen backbone.",
    "<metric>_h<k>": (
        "mae, mse, r2 or pearson of forecasting at horizon step k alone (1 = the first "
        "predicted step); r2 and pearson per neuron across windows, as above."
    ),
}
