"""The exact likelihood of a VAE with a 2-d latent space, by quadrature.

A VAE's loss, the negative ELBO, is an upper bound on the negative log-likelihood
-log p(x) = -log ∫ p(x|z) p(z) dz. With two latent dimensions the integral is a sum
over a fine grid of the latent plane:

    log p(x) ≈ logsumexp_j [ log p(x|z_j) + log N(z_j; 0, I) + log h² ]

for grid points z_j spaced h apart. The grid is decoded once; every digit is then
scored against every grid point as one matrix product, since the Bernoulli
log-likelihood of the loss, sum x log p + (1-x) log(1-p), is
x · (log p - log(1-p)) + sum log(1-p). The decoder's probabilities are clipped as
Keras' binary cross-entropy clips them, so the figure is the loss's own likelihood.

On grey digits that is the likelihood the loss uses, not a normalised density over
grey levels (the continuous Bernoulli would be one); on coin-flip (binarised)
digits it is a true probability, so both are reported.

The grid's own check comes free: the coarser grid of every other point and the grid
one standard deviation narrower are subsets of the same decoded points, so each
result says how far halving the resolution or the extent moves the figure.
``importance_weighted_nll`` is the usual estimate from the encoder's posterior (a
bound that tightens with more samples), as a cross-check.

Only numpy and the Keras models themselves: it runs on any backend.
"""

import math
import time

import numpy as np

from plumbing import backend

keras = backend.import_keras()

# Six standard deviations either side: the prior's mass beyond is below 1e-8.
EXTENT = 6.0
# Finer than the posteriors are wide; each result's ``nll_grid_check`` says how far
# a grid twice as coarse moves the figure, and the tests try one twice as fine.
SPACING = 0.05
# Most of the plane is far from any one digit's posterior: a first pass on every
# STRIDE-th point finds, for each digit, the tiles of TILE x TILE points where its
# likelihood times the prior comes within MARGIN nats of its best coarse point
# (beyond that, even all 58,000 points together weigh less than 1e-8 of it); the
# fine grid is decoded and scored only there.
STRIDE = 4
TILE = 32
MARGIN = 30.0
DECODE_BATCH = 256   # codes decoded at a time
DIGIT_BATCH = 2000   # digits scored at a time: at most 2000 x 1024 floats
BINARISE_SEED = 0
# The importance-weighted cross-check's proposal: the encoder's posterior, widened
# and given heavy tails (importance_weighted_nll says why).
PROPOSAL_WIDEN = 2.0
PROPOSAL_DOF = 3
PROPOSAL_PRIOR_SHARE = 0.2
LOG_2PI = math.log(2 * math.pi)


def _bernoulli_terms(probabilities):
    """For each decoded point: log p - log(1-p) per pixel (pixels by points) and the
    sum of log(1-p), with p clipped as Keras' binary cross-entropy clips it."""
    eps = keras.config.epsilon()
    p = np.clip(probabilities.reshape(len(probabilities), -1).astype(np.float32),
                eps, 1.0 - eps)
    log_p, log_not_p = np.log(p), np.log(np.float32(1.0) - p)
    return np.ascontiguousarray((log_p - log_not_p).T), log_not_p.sum(axis=1)


def _logsumexp_rows(scores):
    top = scores.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True)))[:, 0]


def _decode(decoder, codes):
    # Called directly: ``predict`` sets up a data pipeline on every call, which
    # costs more than decoding a tile.
    codes = np.asarray(codes, dtype=np.float32)
    return np.concatenate([
        keras.ops.convert_to_numpy(decoder(codes[first:first + DECODE_BATCH],
                                           training=False))
        for first in range(0, len(codes), DECODE_BATCH)])


def _relevant_tiles(decoder, digits, axis, log_prior):
    """(digits, tiles, tiles) booleans: where each digit's integrand may matter."""
    coarse = axis[::STRIDE]
    zx, zy = np.meshgrid(coarse, coarse, indexing="ij")
    log_odds, base = _bernoulli_terms(_decode(decoder, np.stack(
        [zx.ravel(), zy.ravel()], axis=1)))
    prior = log_prior[::STRIDE]
    weights = (prior[:, None] + prior[None, :]).ravel().astype(np.float32)
    tiles = -(-len(axis) // TILE)
    step = TILE // STRIDE
    # Tile t spans coarse points step*t .. step*(t+1); one more on either side.
    span = step + 3
    padded = 1 + step * tiles + 2
    relevant = np.zeros((len(digits), tiles, tiles), dtype=bool)
    for first in range(0, len(digits), DIGIT_BATCH):
        rows = slice(first, first + DIGIT_BATCH)
        field = (digits[rows] @ log_odds + base + weights).reshape(-1, len(coarse),
                                                                  len(coarse))
        best = field.max(axis=(1, 2))
        grid = np.full((len(field), padded, padded), -np.inf, dtype=np.float32)
        grid[:, 1:1 + len(coarse), 1:1 + len(coarse)] = field
        rows_max = np.max([grid[:, o:o + step * tiles:step] for o in range(span)],
                          axis=0)
        window = np.max([rows_max[:, :, o:o + step * tiles:step]
                         for o in range(span)], axis=0)
        relevant[rows] = window >= (best - MARGIN)[:, None, None]
    return relevant


def _quadrature(decoder, digits, axis, weight_sets):
    """logsumexp over the grid axis x axis of log p(digit|z) + weight, for each digit
    and each (mask, log weights) pair: an array (len(weight_sets), digits). Each
    tile of the grid is decoded once and scored against the digits it matters to."""
    log_prior = -0.5 * axis ** 2 - 0.5 * LOG_2PI
    relevant = _relevant_tiles(decoder, digits, axis, log_prior)
    n = len(axis)
    index = np.arange(n * n).reshape(n, n)
    zx, zy = np.meshgrid(axis, axis, indexing="ij")
    codes = np.stack([zx.ravel(), zy.ravel()], axis=1)
    totals = np.full((len(weight_sets), len(digits)), -np.inf)
    for tx in range(relevant.shape[1]):
        for ty in range(relevant.shape[2]):
            rows = np.flatnonzero(relevant[:, tx, ty])
            if not len(rows):
                continue
            cols = index[tx * TILE:(tx + 1) * TILE, ty * TILE:(ty + 1) * TILE].ravel()
            log_odds, base = _bernoulli_terms(_decode(decoder, codes[cols]))
            for first in range(0, len(rows), DIGIT_BATCH):
                some = rows[first:first + DIGIT_BATCH]
                scores = digits[some] @ log_odds + base
                for k, (mask, weights) in enumerate(weight_sets):
                    keep = mask[cols]
                    if keep.any():
                        lse = _logsumexp_rows(scores[:, keep] + weights[cols[keep]])
                        totals[k, some] = np.logaddexp(totals[k, some], lse)
    return totals


def binarised(digits, seed=BINARISE_SEED):
    """The digits as coin flips: each pixel inked with the probability its grey level
    gives, drawn once from ``seed``."""
    rng = np.random.default_rng(seed)
    return (rng.random(digits.shape, dtype=np.float32) < digits).astype(np.float32)


def exact_nll(decoder, digits, extent=EXTENT, spacing=SPACING, with_binarised=True):
    """The exact negative log-likelihood of ``digits`` under a 2-d VAE's ``decoder``.

    ``digits``: the test digits in [0, 1], any shape with one digit per row. Returns
    the entries a metrics record keeps: ``test_nll`` (nats per digit, the mean),
    ``test_nll_binarised`` (the same on coin-flip digits, a true likelihood),
    ``nll_method``, ``nll_grid`` (extent in standard deviations, points per axis,
    spacing) and ``nll_grid_check``: how far the mean moves on the grid with every
    other point, and on the grid one standard deviation narrower.
    """
    began = time.perf_counter()
    flat = np.asarray(digits, dtype=np.float32).reshape(len(digits), -1)
    if with_binarised:
        flat = np.concatenate([flat, binarised(flat)])
    points = int(round(2 * extent / spacing)) + 1
    axis = np.linspace(-extent, extent, points)
    spacing = float(axis[1] - axis[0])
    log_prior = -0.5 * axis ** 2 - 0.5 * LOG_2PI
    every_other = np.arange(points) % 2 == 0
    inside = np.abs(axis) <= extent - 1 + 1e-9

    def weights(mask, step):
        both = (mask[:, None] & mask[None, :]).ravel()
        log_w = (log_prior[:, None] + log_prior[None, :]).ravel() + 2 * math.log(step)
        return both, log_w.astype(np.float32)

    sets = [weights(np.ones(points, bool), spacing),
            weights(every_other, 2 * spacing), weights(inside, spacing)]
    per_digit = -_quadrature(decoder, flat, axis, sets)
    grey = per_digit[:, :len(digits)].mean(axis=1)
    record = {
        "test_nll": float(grey[0]),
        "nll_method": "quadrature over the latent plane: the Bernoulli (binary "
                      "cross-entropy) likelihood of the digits, as in the loss, "
                      "summed over a grid of codes weighted by the N(0, I) prior",
        "nll_grid": {"extent_sd": float(extent), "points_per_axis": int(points),
                     "spacing": spacing},
        "nll_grid_check": {"every_other_point": float(grey[1] - grey[0]),
                           "one_sd_narrower": float(grey[2] - grey[0])},
    }
    if with_binarised:
        record["test_nll_binarised"] = float(per_digit[0, len(digits):].mean())
        record["nll_binarised_seed"] = BINARISE_SEED
    record["nll_seconds"] = time.perf_counter() - began
    return record


def importance_weighted_nll(encoder, decoder, digits, samples=1000, seed=0,
                            batch=50, widen=PROPOSAL_WIDEN, dof=PROPOSAL_DOF,
                            prior_share=PROPOSAL_PRIOR_SHARE):
    """The importance-weighted estimate of the same negative log-likelihood, nats
    per digit: ``samples`` codes per digit drawn around the encoder's posterior.

    -log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) is an upper bound in expectation
    that tightens towards the exact figure as k grows (Burda et al., 2016), for any
    proposal q that covers the posterior. The encoder's own Gaussian is too narrow
    a proposal here: it misses part of the true posterior (which is why the ELBO is
    loose), and the MLP VAE's encoder learned on coin-flip digits, not on the grey
    test digits, so the estimate would creep down only slowly with k. The proposal
    is therefore a Student-t with ``dof`` degrees of freedom, centred on the
    encoder's mean with ``widen`` times its standard deviation: heavy tails reach
    what the Gaussian misses. Some grey digits have posterior mass far from the
    encoder's mean, which that proposal rarely reaches: a ``prior_share`` of the
    codes is drawn from the prior itself, which covers every mode, so that no weight
    can exceed 1 / prior_share times the likelihood (defensive importance sampling,
    Hesterberg, 1995). ``digits`` are shaped as the encoder takes them.
    """
    from scipy import stats

    digits = np.asarray(digits, dtype=np.float32)
    mean, log_var = encoder.predict(digits, batch_size=256, verbose=0)
    flat = digits.reshape(len(digits), -1)
    rng = np.random.default_rng(seed)
    eps = keras.config.epsilon()
    estimates = []
    for first in range(0, len(digits), batch):
        rows = slice(first, first + batch)
        mu = mean[rows].astype(np.float64)
        scale = widen * np.exp(0.5 * log_var[rows].astype(np.float64))
        t = stats.t.rvs(dof, size=(len(mu), samples, mu.shape[1]), random_state=rng)
        codes = mu[:, None] + scale[:, None] * t
        from_prior = rng.random((len(mu), samples)) < prior_share
        codes[from_prior] = rng.standard_normal((int(from_prior.sum()), mu.shape[1]))
        t = (codes - mu[:, None]) / scale[:, None]
        decoded = decoder.predict(codes.reshape(-1, mu.shape[1]).astype(np.float32),
                                  batch_size=5000, verbose=0)
        p = np.clip(decoded.reshape(len(mu), samples, -1).astype(np.float64),
                    eps, 1.0 - eps)
        x = flat[rows][:, None, :]
        log_likelihood = (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=2)
        log_prior = (-0.5 * codes ** 2 - 0.5 * LOG_2PI).sum(axis=2)
        log_around = (stats.t.logpdf(t, dof).sum(axis=2)
                      - np.log(scale).sum(axis=1)[:, None])
        log_proposal = np.logaddexp(math.log1p(-prior_share) + log_around,
                                    math.log(prior_share) + log_prior) \
            if prior_share else log_around
        log_w = log_likelihood + log_prior - log_proposal
        estimates.append(math.log(samples) - _logsumexp_rows(log_w))
    return float(np.concatenate(estimates).mean())
