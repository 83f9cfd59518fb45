"""Plain float64 NumPy reference for every kernel and the whole training step.

This file is the specification of what the compiled core computes. It is
written for clarity, not speed: one function per kernel, same conventions
(row-major, W of shape (n_in, n_out), head H = [mu | logvar]).
"""

import numpy as np

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
LOG_2PI = np.log(2 * np.pi)


# -- activations ---------------------------------------------------------------


def activation(a, name):
    if name == "identity":
        return a
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    raise ValueError(name)


def activation_grad_from_output(y, name):
    """d act / d a written through y = act(a)."""
    if name == "identity":
        return np.ones_like(y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "tanh":
        return 1.0 - y * y
    if name == "sigmoid":
        return y * (1.0 - y)
    raise ValueError(name)


# -- dense layer ---------------------------------------------------------------


def dense_forward(X, W, b, act):
    return activation(X @ W + b, act)


def dense_backward(X, W, dA, x_act):
    """dA: gradient at this layer's pre-activation; X = x_act(previous)."""
    dW = X.T @ dA
    db = dA.sum(axis=0)
    dX = (dA @ W.T) * activation_grad_from_output(X, x_act)
    return dX, dW, db


# -- reparameterization and KL ---------------------------------------------------


def split_head(H):
    K = H.shape[1] // 2
    return H[:, :K], H[:, K:]


def reparam_forward(H, eps):
    mu, lv = split_head(H)
    return mu + np.exp(0.5 * np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)) * eps


def reparam_backward(H, eps, dZ):
    mu, lv = split_head(H)
    inside = (lv >= LOGVAR_MIN) & (lv <= LOGVAR_MAX)
    sigma = np.exp(0.5 * np.clip(lv, LOGVAR_MIN, LOGVAR_MAX))
    return np.hstack([dZ, dZ * eps * 0.5 * sigma * inside])


def kl(H):
    mu, lv = split_head(H)
    lv = np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)
    return 0.5 * np.sum(np.exp(lv) + mu**2 - 1.0 - lv, axis=1)


def kl_backward(H):
    mu, lv = split_head(H)
    inside = (lv >= LOGVAR_MIN) & (lv <= LOGVAR_MAX)
    return np.hstack(
        [mu, 0.5 * (np.exp(np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)) - 1) * inside]
    )


# -- reconstruction losses -------------------------------------------------------


def bernoulli(L, X):
    """Per-row sum of softplus(L) - X * L, and d/dL = sigmoid(L) - X."""
    loss = np.sum(np.logaddexp(0.0, L) - X * L, axis=1)
    return loss, 1.0 / (1.0 + np.exp(-L)) - X


def gaussian(M, X, sigma):
    D = M.shape[1]
    loss = np.sum((X - M) ** 2, axis=1) / (2 * sigma**2) + D * (
        np.log(sigma) + 0.5 * LOG_2PI
    )
    return loss, (M - X) / sigma**2


# -- optimizers ------------------------------------------------------------------


def sgd(p, g, lr):
    return p - lr * g


def momentum(p, g, v, lr, mu):
    v = mu * v + g
    return p - lr * v, v


def adam(p, g, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    step = lr / (1 - beta1**t)
    denom = np.sqrt(v) / np.sqrt(1 - beta2**t) + eps
    return p - step * m / denom, m, v


def gaussian_learned(M, X, logsigma):
    """Per-row loss with one log-sigma per feature (clamped to [-7, 5]), d/dM,
    and the per-row terms of d/d logsigma (0 where clamped)."""
    s = np.clip(logsigma, LOGSIGMA_MIN, LOGSIGMA_MAX)
    inside = (logsigma >= LOGSIGMA_MIN) & (logsigma <= LOGSIGMA_MAX)
    r = M - X
    iv = np.exp(-2 * s)
    loss = np.sum(0.5 * r * r * iv + s + 0.5 * LOG_2PI, axis=1)
    return loss, r * iv, (1 - r * r * iv) * inside


LOGSIGMA_MIN, LOGSIGMA_MAX = -7.0, 5.0
LOGDISP_MIN, LOGDISP_MAX = -12.0, 12.0


# -- the whole step ---------------------------------------------------------------


def forward(
    layers,
    n_encoder,
    X,
    eps,
    likelihood="bernoulli",
    sigma=1.0,
    kind="vae",
    cond=None,
    logsigma=None,
    x_in=None,
):
    """Forward pass. layers: list of (W, b, act), encoder layers [0, n_encoder)
    ending with the head (2K wide for a VAE, K for an autoencoder), then the
    decoder. cond: condition rows appended to the encoder and decoder inputs;
    x_in: the encoder's view of X (a corrupted copy for denoising).
    Returns what backward needs."""
    x_in = X if x_in is None else x_in
    first = x_in if cond is None else np.hstack([x_in, cond])
    acts = [first]
    for W, b, act in layers[:n_encoder]:
        acts.append(dense_forward(acts[-1], W, b, act))
    H = acts[-1]
    Z = reparam_forward(H, eps) if kind == "vae" else H
    dec = [Z if cond is None else np.hstack([Z, cond])]
    for W, b, act in layers[n_encoder:]:
        dec.append(dense_forward(dec[-1], W, b, act))
    out = dec[-1]
    dlogsigma_rows = None
    if likelihood == "bernoulli":
        recon, dout = bernoulli(out, X)
    elif likelihood == "gaussian":
        recon, dout = gaussian(out, X, sigma)
    else:
        recon, dout, dlogsigma_rows = gaussian_learned(out, X, logsigma)
    kl_rows = kl(H) if kind == "vae" else np.zeros(X.shape[0])
    return dict(
        acts=acts,
        H=H,
        Z=Z,
        dec=dec,
        recon=recon,
        kl=kl_rows,
        dout=dout,
        dlogsigma_rows=dlogsigma_rows,
    )


def _decoder_backward(layers, n_encoder, f, d, grads):
    """Back through the decoder layers from d = dloss/d(output): fills their
    grads and returns dloss/d(decoder input)."""
    for li in range(len(layers) - 1, n_encoder - 1, -1):
        W, b, _ = layers[li]
        j = li - n_encoder
        x_act = "identity" if j == 0 else layers[li - 1][2]
        d, dW, db = dense_backward(f["dec"][j], W, d, x_act)
        grads[li] = (dW, db)
    return d


def _encoder_backward(layers, n_encoder, f, d, grads):
    """Back through the encoder layers from d = dloss/d(head): fills their
    grads."""
    for li in range(n_encoder - 1, -1, -1):
        W, b, _ = layers[li]
        x_act = "identity" if li == 0 else layers[li - 1][2]
        d, dW, db = dense_backward(f["acts"][li], W, d, x_act)
        grads[li] = (dW, db)


def loss_and_grads(
    layers,
    n_encoder,
    X,
    eps,
    likelihood="bernoulli",
    sigma=1.0,
    beta=1.0,
    kind="vae",
    cond=None,
    logsigma=None,
    x_in=None,
):
    """Mean negative ELBO (recon + beta * KL) over rows and its gradients.

    Returns (loss, recon_rows, kl_rows, grads) with grads a list of (dW, db)
    per layer, followed by d/d logsigma for a learned Gaussian.
    """
    f = forward(
        layers, n_encoder, X, eps, likelihood, sigma, kind, cond, logsigma, x_in
    )
    n = X.shape[0]
    K = f["Z"].shape[1]
    grads = [None] * len(layers)
    d = _decoder_backward(layers, n_encoder, f, f["dout"] / n, grads)
    d = d[:, :K]  # d[z | c] -> dz
    if kind == "vae":
        d = reparam_backward(f["H"], eps, d) + beta / n * kl_backward(f["H"])
    _encoder_backward(layers, n_encoder, f, d, grads)
    if likelihood == "gaussian_learned":
        grads.append(f["dlogsigma_rows"].sum(axis=0) / n)
    loss = np.mean(f["recon"] + beta * f["kl"])
    return loss, f["recon"], f["kl"], grads


def loss_and_grads_samples(
    layers,
    n_encoder,
    X,
    eps,
    objective,
    likelihood="bernoulli",
    sigma=1.0,
    beta=1.0,
    cond=None,
    logsigma=None,
):
    """The step with k latent samples per row: eps (n, k, K).

    objective "elbo": mean over rows of the samples' mean -log p(x | z_s) plus
    beta * KL (closed form). "iwae": mean over rows of -log (1/k) sum_s w_s,
    log w_s = log p(x | z_s) + beta * (log p(z_s) - log q(z_s | x)), whose
    gradient is sum_s wn_s grad(-log w_s), wn the normalized weights.

    Returns (loss, recon_rows, kl_rows, grads) like loss_and_grads, with an
    IWAE row's recon the row's loss minus beta * KL.
    """
    n, k, K = eps.shape
    Xr = np.repeat(X, k, axis=0)  # pair q = i * k + s
    cr = None if cond is None else np.repeat(cond, k, axis=0)
    E = eps.reshape(n * k, K)
    f = forward(layers, n_encoder, Xr, E, likelihood, sigma, "vae", cr, logsigma)
    H, Z, R = f["H"], f["Z"], f["recon"]
    kl_rows = kl(H)[::k]
    if objective == "elbo":
        a = np.full(n * k, 1.0 / (n * k))
        recon_rows = R.reshape(n, k).mean(axis=1)
        loss = np.mean(recon_rows + beta * kl_rows)
    else:
        _, lv = split_head(H)
        lv = np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)
        log_ratio = -0.5 * np.sum(Z * Z - E * E - lv, axis=1)
        lw = (-R + beta * log_ratio).reshape(n, k)
        top = lw.max(axis=1, keepdims=True)
        w = np.exp(lw - top)
        row_loss = np.log(k) - top[:, 0] - np.log(w.sum(axis=1))
        a = (w / w.sum(axis=1, keepdims=True)).reshape(-1) / n
        recon_rows = row_loss - beta * kl_rows
        loss = np.mean(row_loss)
    grads = [None] * len(layers)
    d = _decoder_backward(layers, n_encoder, f, f["dout"] * a[:, None], grads)
    dz = d[:, :K]
    if objective == "elbo":
        d = reparam_backward(H, E, dz) + beta / n / k * kl_backward(H)
    else:
        _, raw_lv = split_head(H)
        inside = (raw_lv >= LOGVAR_MIN) & (raw_lv <= LOGVAR_MAX)
        d = reparam_backward(H, E, dz + beta * a[:, None] * Z)
        d[:, K:] -= 0.5 * beta * a[:, None] * inside
    _encoder_backward(layers, n_encoder, f, d, grads)
    if likelihood == "gaussian_learned":
        grads.append((f["dlogsigma_rows"] * a[:, None]).sum(axis=0))
    return loss, recon_rows, kl_rows, grads


# -- per-column likelihoods (src_c/fastvae/columns.h) -------------------------


def _softplus(v):
    return np.logaddexp(0.0, v)


def expand_columns(X, spec, missing=False):
    """The encoder's view of data rows X (one value per column, NaN missing):
    the value, a one-hot row per level, log1p of a count, 0 when missing;
    then one missingness indicator per column when asked."""
    parts = []
    for d, (kind, width, _) in enumerate(spec):
        x = X[:, d]
        gone = np.isnan(x)
        if kind == "categorical":
            block = np.zeros((len(x), width))
            ok = ~gone
            block[np.flatnonzero(ok), x[ok].astype(int)] = 1.0
        elif kind in ("poisson", "negbin", "zinb"):
            block = np.where(gone, 0.0, np.log1p(np.where(gone, 0.0, x)))[:, None]
        else:
            block = np.where(gone, 0.0, x)[:, None]
        parts.append(block)
    if missing:
        parts.append(np.isnan(X).astype(float))
    return np.hstack(parts)


def _zinb_aux(spec):
    """Output index of each zero-inflated column's logit (after all widths)."""
    at = sum(width for _, width, _ in spec)
    aux = {}
    for d, (kind, _, _) in enumerate(spec):
        if kind == "zinb":
            aux[d] = at
            at += 1
    return aux


def columns_loss(out, X, spec, tail):
    """Per-row -log p(x | outputs) over the observed entries, d/d out, and the
    per-row terms of d/d tail (learned log-sigma, log-dispersion). tail: one
    value per column (D,), or one row of them per data row (n, D)."""
    from scipy.special import digamma, expit, gammaln

    tail = None if tail is None else np.asarray(tail, dtype=np.float64)

    n = X.shape[0]
    loss = np.zeros(n)
    dO = np.zeros_like(out)
    dtail = np.zeros((n, len(spec)))
    aux = _zinb_aux(spec)
    at = 0
    for d, (kind, width, sigma) in enumerate(spec):
        o = out[:, at : at + width]
        x = X[:, d]
        seen = ~np.isnan(x)
        xs = np.where(seen, x, 0.0)
        if kind == "gaussian":
            r = o[:, 0] - xs
            term = 0.5 * r * r / sigma**2 + np.log(sigma) + 0.5 * LOG_2PI
            grad = (r / sigma**2)[:, None]
        elif kind == "gaussian_learned":
            s = np.clip(tail[..., d], LOGSIGMA_MIN, LOGSIGMA_MAX)
            inside = (LOGSIGMA_MIN <= tail[..., d]) & (tail[..., d] <= LOGSIGMA_MAX)
            r = o[:, 0] - xs
            term = 0.5 * r * r * np.exp(-2 * s) + s + 0.5 * LOG_2PI
            grad = (r * np.exp(-2 * s))[:, None]
            dtail[:, d] = np.where(seen, (1 - r * r * np.exp(-2 * s)) * inside, 0.0)
        elif kind == "bernoulli":
            term = _softplus(o[:, 0]) - xs * o[:, 0]
            grad = (1 / (1 + np.exp(-o[:, 0])) - xs)[:, None]
        elif kind == "categorical":
            lse = np.logaddexp.reduce(o, axis=1)
            level = xs.astype(int)
            term = lse - o[np.arange(n), level]
            grad = np.exp(o - lse[:, None])
            grad[np.arange(n), level] -= 1.0
        elif kind == "poisson":
            term = np.exp(o[:, 0]) - xs * o[:, 0] + gammaln(xs + 1)
            grad = (np.exp(o[:, 0]) - xs)[:, None]
        elif kind == "negbin":
            lt = np.clip(tail[..., d], LOGDISP_MIN, LOGDISP_MAX)
            inside = (LOGDISP_MIN <= tail[..., d]) & (tail[..., d] <= LOGDISP_MAX)
            theta, e = np.exp(lt), o[:, 0]
            mu = np.exp(e)
            log_sum = np.logaddexp(lt, e)
            term = -(
                gammaln(xs + theta)
                - gammaln(theta)
                - gammaln(xs + 1)
                + theta * (lt - log_sum)
                + xs * (e - log_sum)
            )
            grad = (mu * (theta + xs) / (theta + mu) - xs)[:, None]
            dlog_p = (
                digamma(xs + theta)
                - digamma(theta)
                + lt
                - log_sum
                + (mu - xs) / (theta + mu)
            )
            dtail[:, d] = np.where(seen, -theta * dlog_p * inside, 0.0)
        elif kind == "zinb":
            # p(x) = w [x = 0] + (1 - w) NB(x), w = sigmoid(pi); derivatives
            # by the quotient rule on p(0) (columns.h uses softplus forms)
            lt = np.clip(tail[..., d], LOGDISP_MIN, LOGDISP_MAX)
            inside = (LOGDISP_MIN <= tail[..., d]) & (tail[..., d] <= LOGDISP_MAX)
            theta, e, pi = np.exp(lt), o[:, 0], out[:, aux[d]]
            mu, w = np.exp(e), expit(pi)
            log_sum = np.logaddexp(lt, e)
            log_nb = (
                gammaln(xs + theta)
                - gammaln(theta)
                - gammaln(xs + 1)
                + theta * (lt - log_sum)
                + xs * (e - log_sum)
            )
            q = np.exp(theta * (lt - log_sum))  # NB(0)
            p0 = w + (1 - w) * q
            zero = xs == 0
            term = np.where(zero, -np.log(p0), -np.log1p(-w) - log_nb)
            dq_de = -q * theta * mu / (theta + mu)
            dq_dlt = q * theta * (lt - log_sum + 1 - theta / (theta + mu))
            nb_de = mu * (theta + xs) / (theta + mu) - xs
            nb_dlt = -theta * (
                digamma(xs + theta)
                - digamma(theta)
                + lt
                - log_sum
                + (mu - xs) / (theta + mu)
            )
            grad = np.where(zero, -(1 - w) * dq_de / p0, nb_de)[:, None]
            dO[:, aux[d]] = np.where(
                seen, np.where(zero, -w * (1 - w) * (1 - q) / p0, w), 0.0
            )
            dtail[:, d] = np.where(
                seen, np.where(zero, -(1 - w) * dq_dlt / p0, nb_dlt) * inside, 0.0
            )
        else:
            raise ValueError(kind)
        loss += np.where(seen, term, 0.0)
        dO[:, at : at + width] = np.where(seen[:, None], grad, 0.0)
        at += width
    return loss, dO, dtail


def columns_means(out, spec, library=False):
    """Mean of p(x | outputs) per output: Gaussian mean, Bernoulli
    probability, level probabilities, expected count (zero-inflated: times 1
    - w, and w at its logit's output). With library, counts per unit of
    library size (softmax instead of exp)."""
    means = np.empty_like(out)
    aux = _zinb_aux(spec)
    if library:
        D = len(spec)
        out = out.copy()
        out[:, :D] -= np.logaddexp.reduce(out[:, :D], axis=1)[:, None]
    at = 0
    for d, (kind, width, _) in enumerate(spec):
        o = out[:, at : at + width]
        if kind == "bernoulli":
            m = 1 / (1 + np.exp(-o))
        elif kind == "categorical":
            m = np.exp(o - np.logaddexp.reduce(o, axis=1)[:, None])
        elif kind in ("poisson", "negbin"):
            m = np.exp(o)
        elif kind == "zinb":
            w = 1 / (1 + np.exp(-out[:, aux[d]]))
            m = np.exp(o) * (1 - w)[:, None]
            means[:, aux[d]] = w
        else:
            m = o
        means[:, at : at + width] = m
        at += width
    return means


def library_outputs(f, X):
    """The count columns' log means under a library size: f - logsumexp(f)
    + log(max(1, row total)) over the first X.shape[1] outputs."""
    D = X.shape[1]
    e = f.copy()
    total = np.maximum(X.sum(axis=1), 1.0)
    e[:, :D] += (np.log(total) - np.logaddexp.reduce(f[:, :D], axis=1))[:, None]
    return e


def library_backward(f, dE, D):
    """d/d f from d/d e of library_outputs: through the softmax."""
    p = np.exp(f[:, :D] - np.logaddexp.reduce(f[:, :D], axis=1)[:, None])
    dF = dE.copy()
    dF[:, :D] -= p * dE[:, :D].sum(axis=1)[:, None]
    return dF


def loss_and_grads_columns(
    layers,
    n_encoder,
    X,
    eps,
    spec,
    tail,
    missing=False,
    beta=1.0,
    kind="vae",
    cond=None,
    library=False,
    tail_by_condition=False,
):
    """loss_and_grads for a per-column likelihood: mean over rows of the
    observed entries' -log p plus beta * KL, and its gradients (the last
    entry of grads: d/d tail, one per column). library: the counts' means
    are softmax times the row's total (library_outputs).
    tail_by_condition: tail is phi (n_cond, D) and row i's tails are
    cond_i @ phi (scVI's F.linear(one_hot(batch), px_r)); d/d phi is then
    cond.T @ (per-row tail terms) / n, shape (n_cond, D)."""
    phi = tail
    if tail_by_condition:
        tail = cond @ np.asarray(phi, dtype=np.float64)
    n = X.shape[0]
    x_in = expand_columns(X, spec, missing)
    n_out = sum(width for _, width, _ in spec) + len(_zinb_aux(spec))
    f = forward(
        layers,
        n_encoder,
        np.zeros((n, n_out)),
        eps,
        "gaussian",
        1.0,
        kind,
        cond,
        x_in=x_in,
    )
    out = f["dec"][-1]
    if library:
        recon, dout, dtail = columns_loss(library_outputs(out, X), X, spec, tail)
        dout = library_backward(out, dout, X.shape[1])
    else:
        recon, dout, dtail = columns_loss(out, X, spec, tail)
    kl_rows = kl(f["H"]) if kind == "vae" else np.zeros(n)
    K = f["Z"].shape[1]
    grads = [None] * len(layers)
    d = _decoder_backward(layers, n_encoder, f, dout / n, grads)
    d = d[:, :K]
    if kind == "vae":
        d = reparam_backward(f["H"], eps, d) + beta / n * kl_backward(f["H"])
    _encoder_backward(layers, n_encoder, f, d, grads)
    if tail_by_condition:
        grads.append(cond.T @ dtail / n)
    else:
        grads.append(dtail.sum(axis=0) / n)
    loss = np.mean(recon + beta * kl_rows)
    return loss, recon, kl_rows, grads


def log_likelihood(
    layers,
    n_encoder,
    X,
    eps,
    likelihood="bernoulli",
    sigma=1.0,
    cond=None,
    logsigma=None,
):
    """Importance-sampled log p(x): eps (n, k, K) are the standard normals of
    each row's k samples; log-mean-exp of log p(x|z) + log p(z) - log q(z|x)."""
    n, k, K = eps.shape
    out = np.empty(n)
    for r in range(n):
        x = np.repeat(X[r : r + 1], k, axis=0)
        c = None if cond is None else np.repeat(cond[r : r + 1], k, axis=0)
        f = forward(layers, n_encoder, x, eps[r], likelihood, sigma, "vae", c, logsigma)
        mu, lv = split_head(f["H"])
        lv = np.clip(lv, LOGVAR_MIN, LOGVAR_MAX)
        z = f["Z"]
        log_pz = -0.5 * np.sum(z * z + LOG_2PI, axis=1)
        log_qz = -0.5 * np.sum(eps[r] ** 2 + LOG_2PI + lv, axis=1)
        lw = -f["recon"] + log_pz - log_qz
        m = lw.max()
        out[r] = m + np.log(np.mean(np.exp(lw - m)))
    return out


# -- evaluation noise -------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def row_key(row):
    """The 64-bit key of one row (src_c/fastvae/row_hash.h): its 32-bit words
    (one per float32, low and high half per float64, -0 read as +0) go into
    16 lanes, word i into lane i % 16 as h = (h ^ word) * 0x9E3779B1 mod 2^32
    with lane l starting at l; then key = mix64(n_words), and per lane
    key = mix64(key ^ h_l) (SplitMix64's finalizer)."""
    row = np.ascontiguousarray(row) + row.dtype.type(0)  # -0 -> +0
    words = [int(w) for w in row.view(np.uint32)]
    h = list(range(16))
    for i, w in enumerate(words):
        h[i % 16] = ((h[i % 16] ^ w) * 0x9E3779B1) & 0xFFFFFFFF
    key = _mix64(len(words))
    for lane in h:
        key = _mix64(key ^ lane)
    return key
