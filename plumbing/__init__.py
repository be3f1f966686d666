"""Plumbing: the chores the lessons share, kept out of their way.

Nothing in this package teaches anything about autoencoders. The lessons are the
scripts at the top level (``simple_autoencoder.py`` ... ``visualize_latent_space.py``);
this package only does what every one of them needs and no reader needs to see:

* ``cli``: the command line, reading a lesson's options (from the command line or a
  notebook's ``options``), and one-line error reporting.
* ``backend``: Keras, its backend checked and loaded quietly.
* ``data``: MNIST, Fashion-MNIST, the offline sample and checked ``.npz`` files.
* ``files``: bounded reads, atomic writes, and each run's outputs as one set.
* ``training``: what the training scripts share once Keras is loaded.
* ``precision``: the dtype policy to train in, and float32 copies to save.
* ``figures``: the matplotlib figures.
* ``loading``: safe loading: pickles of numpy arrays only, bounded and checked,
  and a saved decoder checked before Keras reads it.
* ``visualiser_options``: the visualiser's command line.
* ``saved_codes``: one model's saved codes for the visualiser, loaded and checked.
* ``tsne_cache``: the visualiser's t-SNE progress and its cache.
* ``map_report``: the visualiser's reporting: numbers, titles, tables, the grid of
  maps, and the page and projector files.
* ``safe_text``: names from files made safe to print, to write and to draw.
* ``explorer``: the visualiser's interactive page and TensorBoard projector files.
* ``lessons``: a lesson's definitions without its run (for the deconvolutional VAE,
  the benchmarks and the tests).
* ``notebooks``: notebooks/ made from the lessons (``python -m plumbing.notebooks``).

Only ``training`` imports Keras as it loads (others through ``backend`` when they
need it), so the visualiser starts without any deep-learning backend.
"""
