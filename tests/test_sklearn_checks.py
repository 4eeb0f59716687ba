"""scikit-learn's estimator checks on small configurations."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_walloc import WallocCodec, WallocTransformer

# Tiny models and a few steps: the checks fit dozens of times.
_FAST = dict(decoder_width=4, decoder_depth=1, max_iter=2, batch_size=2, random_state=0)

ESTIMATORS = [
    # 1D flat rows: each row is a mono signal (the checks use few features).
    WallocTransformer(signal_ndim=1, levels=1, latent_dim=1, **_FAST),
    # 2D flat rows read as 1 x n_features images (-1 is inferred), one channel.
    WallocTransformer(
        signal_ndim=2, signal_shape=(1, -1), levels=1, latent_dim=2, **_FAST
    ),
    # The codec is the same estimator plus entropy coding.
    WallocCodec(signal_ndim=1, levels=1, latent_dim=1, **_FAST),
]


# No check is expected to fail: every configuration passes the whole suite.
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_tags_declare_float32_latents():
    # Latents are integer-valued float32 whatever the input dtype.
    for est in ESTIMATORS:
        assert est.__sklearn_tags__().transformer_tags.preserves_dtype == ["float32"]
