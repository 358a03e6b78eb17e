"""Pure PyTorch genre models: no Django imports anywhere under ml/engine/.

The contract with the Django side (ml.services) - names and signatures kept stable:

- ``ml.engine.contracts`` (no torch): ``Example(key, text, image, labels)``: ``image`` is a
  local path, raw bytes or None (no poster); ``labels`` are genre indices (empty for
  inference); ``ImageLimits(max_pixels, max_bytes)``, the limits posters are decoded under
  (``fit(..., image_limits=)``, ``load_model(..., image_limits=)``); ``ImageLoadError``.
  ``ml.engine.data`` re-exports them.
- ``ml.engine.config.ModelConfig``: dataclass with ``to_dict()``/``from_dict()``; names
  ``text_encoder`` and ``image_encoder`` (registered encoder families, or "none"),
  ``fusion`` (a registered fusion family), ``train_mode`` (frozen, finetune) and
  hyperparameters.
- ``ml.engine.families``: the encoder and fusion registries (``register_encoder``,
  ``register_fusion``, ``encoder_names``, ...); the built-in families are registered in
  ``ml.engine.builtin_families``.
- ``ml.engine.registry.PRESETS`` (named configs for every family) and
  ``get_config(name | dict | {"preset": name, **overrides}) -> ModelConfig``.
- ``ml.engine.train.fit(config, genres, train, val, *, device=None, store=None, cache_dir=None,
  checkpoint_dir=None, progress=None, log=None) -> TrainedModel``. ``progress(message,
  fraction)`` may raise to cancel; the checkpoint of the last finished epoch then lets a
  later call with the same ``checkpoint_dir`` resume. CUDA is used when present unless
  ``device`` says otherwise (mixed precision only on CUDA).
- ``TrainedModel`` (ml.engine.trained): ``config``, ``genres``, ``thresholds`` [G],
  ``history`` (per epoch: train_loss, val_loss, val_micro_f1), ``device``, ``timings``;
  ``predict_proba(examples, batch_size=64, progress=None) -> float32 [n, G]``,
  ``predict(examples) -> (probs, decisions)`` with per-genre thresholds and at least the
  top genre per movie, ``save(directory) -> {"files": [...], "sha256": ...}``.
- ``ml.engine.artifact.load_model(directory, device=None, store=None, cache_dir=None, log=None)``:
  bit-identical predictions to the saved model on the same device.
- ``ml.engine.metrics.evaluate``, ``ml.engine.thresholds.tune_thresholds/apply_thresholds``
  and ``ml.engine.split.iterative_stratified_split`` (pure numpy).
- ``ml.engine.benchmark``: the devset benchmark behind ``manage.py benchmark_models``.

Frozen mode: pretrained encoders (MiniLM, EfficientNet-Lite0/1/2, ResNet with locally cached
weights) run once per text/poster: their vectors go to an embedding store
(``ml.engine.store``: ``get_many(space, digests)`` / ``put_many(space, vectors)``; a
``FolderStore`` under ``cache_dir`` on its own, the shared database store in genreweb), keyed
by the encoder's space (family + pretrained identity + output settings + device type,
computed without loading it) and the content hash, and only the fusion head trains. Finetune mode trains encoders and head end to end with train-time augmentation.
"""
