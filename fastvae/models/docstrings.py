"""Docstring sections the estimators share (their constructor arguments
and fitted attributes), written once."""

COMMON_PARAMETERS = """
    input_dim : int, optional
        Number of features. Inferred from the data in `fit` when None.
    hidden : int or tuple of int, default=(400,)
        Encoder hidden layer widths.
    latent_dim : int, default=20
        Size of the code z.
    decoder_hidden : int or tuple of int, optional
        Decoder hidden layer widths; the reverse of `hidden` when None.
    likelihood : {"bernoulli", "gaussian"} or sequence, default="bernoulli"
        p(x|z): Bernoulli with logits for data in [0, 1], or Gaussian, for
        every feature; or one entry per column of X (a table): "gaussian",
        "bernoulli", "categorical" (X holds level codes 0, 1, ...; the
        levels are max code + 1 in fit, or give ("categorical", n_levels)),
        "poisson" or "negbin" (counts; a negative binomial with one learned
        dispersion per column). The encoder reads a categorical column
        one-hot and a count as log1p(count).
    sigma : float or "learned", default=1.0
        Observation noise of the Gaussian likelihood: a fixed value, or
        "learned" for one trained standard deviation per feature (its log
        clamped to [-7, 5]).
    activation : {"relu", "tanh", "sigmoid", "identity"}, default="relu"
        Activation of every hidden layer.
"""


TRAINING_PARAMETERS = """
    dynamic_binarization : bool, default=False
        Draw binary training targets x ~ Bernoulli(X) afresh at every step
        (X in [0, 1], Bernoulli likelihood): the "dynamically binarized MNIST"
        of the VAE literature.
    optimizer : {"adam", "momentum", "sgd"} or a fastvae.optim object, default="adam"
    lr : float, optional
        Learning rate; the optimizer's default (Adam 1e-3, SGD and momentum
        0.01) when None.
    epochs : int, default=20
        Passes over the data (the command line's default too).
    batch_size : int, default=128
    dtype : numpy.float32 or numpy.float64, default=numpy.float32
        Precision of parameters and computation.
    random_state : int, default=0
        Seeds initialisation, shuffling and every random draw (Philox key);
        the same value gives bitwise identical results for any thread count.
        An integer only: the draws are counter-based, so there is no
        generator state to pass in.
    n_threads : int, optional
        Threads for this model; fastvae.get_num_threads() when None.
    verbose : {0, 1, 2}, default=0
        1 shows a progress bar during `fit`, 2 also prints one line per epoch.
    warm_start : bool, default=False
        When True, `fit` on a fitted model continues from its parameters and
        optimizer state instead of starting over.
    seed : int, optional
        Deprecated name of `random_state` (scikit-learn's), accepted with a
        FutureWarning until fastvae 0.3; it wins over `random_state` when
        given.
"""


ATTRIBUTES = """
    Attributes
    ----------
    params_ : ndarray of shape (n_params,)
        All weights and biases (and learned log-sigmas) in one contiguous
        buffer.
    n_features_in_ : int
    n_conditions_ : int
        Width of the condition vector the model was fitted with (0: none).
    n_iter_ : int
        Epochs trained.
    t_ : int
        Optimizer steps taken.
    history_ : dict of lists
        Per epoch: "epoch", "loss", "reconstruction", "kl", "elbo",
        "val_elbo" (None without validation data), "active_units" (a
        VAE's latent dimensions in use on up to 2,000 validation rows, by
        Burda et al.'s Cov_x E_q[z_j] > 0.01; None without validation
        data), "lr" (the learning rate of the epoch's last step),
        "seconds", "samples_per_second"; finer: "step", "step_loss".
    loss_curve_ : list of float
        Mean training loss of each epoch.
    feature_names_in_ : ndarray of str objects
        The column names of X, when fit was given a DataFrame whose columns
        are all strings (not kept in model files).
    training_data_ : dict
        What the model was trained on: "n_samples" and "n_features" of the
        last fit, "min" and "max" over all data it was fitted on, and a
        "source" a caller may add (the command line stores the data's name
        and location there); saved in model files.
    anndata_layer_, condition_key_ : str or None
        When fit was given an AnnData: its `layer` and `condition_key`
        (None for ``X`` and no condition, and after a fit on arrays).
    condition_levels_ : list or None
        The levels of `condition_key_`, in the order of the condition
        columns. Inference methods given an AnnData read it with these three.
    sigma_ : float or ndarray of shape (n_features,)
        Gaussian likelihood only: the fixed or learned standard deviations
        (a VAE with ``dispersion="gene-batch"``: shape (n_conditions,
        n_features), one row per condition column).
"""
