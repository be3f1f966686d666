"""Plumbing: the chores the lessons share, kept out of their way.

Nothing in this package teaches anything about autoencoders. The lessons are the
scripts at the top level (``simple_autoencoder.py`` ... ``visualize_latent_space.py``);
this package only does what every one of them needs and no reader needs to see:

* ``cli``: the command line, option checks and one-line error reporting.
* ``files``: atomic writes, and each run's outputs made visible as one set.
* ``training``: what the training scripts share (imports Keras).
* ``precision``: the dtype policy to train in, and float32 copies to save.
* ``figures``: the matplotlib figures.
* ``latent``: the visualiser's chores: safe unpickling, checks, t-SNE cache.
* ``explorer``: the visualiser's interactive page and TensorBoard projector files.

Only ``training`` (and ``explorer``'s VAE plane) import Keras, so the visualiser
starts without any deep-learning backend.
"""
