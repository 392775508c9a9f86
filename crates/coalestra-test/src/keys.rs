//! Key shorthands for tests: [`key`] and [`IntoResourceKey`].

use coalestra_core::ResourceKey;

/// Parses a rendered key (`namespace:name[:subject][?k=v&..]`), panicking
/// with a clear message when the text is not a valid key.
///
/// Test-only convenience: production code should handle the
/// [`coalestra_core::KeyError`] that [`ResourceKey::parse`] returns.
///
/// ```
/// use coalestra_test::key;
///
/// let k = key("market:candles:BTCUSDT?limit=500&interval=1m");
/// assert_eq!(k.qualifier("interval"), Some("1m"));
/// assert_eq!(k.to_string(), "market:candles:BTCUSDT?interval=1m&limit=500");
/// ```
///
/// # Panics
///
/// When `text` does not parse as a resource key.
#[track_caller]
pub fn key(text: &str) -> ResourceKey {
    match ResourceKey::parse(text) {
        Ok(key) => key,
        Err(error) => panic!("invalid resource key {text:?} in test: {error}"),
    }
}

/// Anything a mock accepts where it needs a key: a [`ResourceKey`] (owned or
/// borrowed) or its rendering as text (parsed with [`key`], so bad text
/// panics).
pub trait IntoResourceKey {
    /// Converts into a key.
    fn into_resource_key(self) -> ResourceKey;
}

impl IntoResourceKey for ResourceKey {
    fn into_resource_key(self) -> ResourceKey {
        self
    }
}

impl IntoResourceKey for &ResourceKey {
    fn into_resource_key(self) -> ResourceKey {
        self.clone()
    }
}

impl IntoResourceKey for &str {
    #[track_caller]
    fn into_resource_key(self) -> ResourceKey {
        key(self)
    }
}

impl IntoResourceKey for String {
    #[track_caller]
    fn into_resource_key(self) -> ResourceKey {
        key(&self)
    }
}
