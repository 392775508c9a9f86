//! Resource key identity: normalizers, qualifiers, rendering, parsing and
//! ordering.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use coalestra_core::{KeyError, KeyMap, KeyNormalizer, NormalizeParts, ResourceKey};

const NO_QUALIFIERS: [(&str, &str); 0] = [];

fn hash_of(key: &ResourceKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

fn build<V: std::fmt::Display>(
    ns: &str,
    name: &str,
    subject: &str,
    qualifiers: Vec<(&str, V)>,
    normalizer: KeyNormalizer,
) -> ResourceKey {
    ResourceKey::with_normalizer(ns, name, subject, qualifiers, normalizer).expect("a valid key")
}

fn qualifiers_of(key: &ResourceKey) -> Vec<(String, String)> {
    key.qualifiers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_default_normalizer_trims_and_keeps_case() {
    let key = ResourceKey::new(" Tenant-A ", " DocumentId ", "/Path/File").unwrap();
    assert_eq!(key.namespace(), "Tenant-A");
    assert_eq!(key.name(), "DocumentId");
    assert_eq!(key.subject(), "/Path/File");
    assert_ne!(
        key,
        ResourceKey::new("tenant-a", "documentid", "/path/file").unwrap()
    );
}

#[test]
fn the_legacy_normalizer_lowers_namespace_and_name_and_uppers_subject() {
    let key = build(
        " Market ",
        " Price ",
        " btcusdt ",
        vec![(" Interval ", " 5M ")],
        KeyNormalizer::Legacy,
    );
    assert_eq!(key.namespace(), "market");
    assert_eq!(key.name(), "price");
    assert_eq!(key.subject(), "BTCUSDT");
    assert_eq!(
        qualifiers_of(&key),
        vec![("interval".to_owned(), "5M".to_owned())],
        "qualifier names are lowered, values only trimmed"
    );
    let plain = ResourceKey::legacy(" Market ", " Price ", " btcusdt ").unwrap();
    assert_eq!(plain.to_string(), "market:price:BTCUSDT");
    assert_eq!(
        plain,
        ResourceKey::legacy("market", "price", "BTCUSDT").unwrap()
    );
    assert!(matches!(plain.normalizer(), KeyNormalizer::Legacy));
}

#[test]
fn the_case_insensitive_normalizer_folds_every_part() {
    let folded = build(
        " Tenant-A ",
        " DocumentId ",
        "/Path/File",
        NO_QUALIFIERS.to_vec(),
        KeyNormalizer::CaseInsensitive,
    );
    assert_eq!(
        folded,
        ResourceKey::new("tenant-a", "documentid", "/path/file").unwrap()
    );
}

#[test]
fn the_case_insensitive_normalizer_uses_full_unicode_case_folding() {
    let key = build(
        "ß",
        "Straße",
        "GROSS",
        NO_QUALIFIERS.to_vec(),
        KeyNormalizer::CaseInsensitive,
    );
    assert_eq!(key.namespace(), "ss", "full folding, not to_lowercase");
    assert_eq!(key.name(), "strasse");
    assert_eq!(
        key,
        build(
            "SS",
            "STRASSE",
            "gross",
            NO_QUALIFIERS.to_vec(),
            KeyNormalizer::CaseInsensitive
        )
    );
}

struct UpperLowerUpper;

impl NormalizeParts for UpperLowerUpper {
    fn namespace(&self, raw: &str) -> String {
        raw.trim().to_uppercase()
    }
    fn name(&self, raw: &str) -> String {
        raw.trim().to_lowercase()
    }
    fn subject(&self, raw: &str) -> String {
        raw.trim().to_uppercase()
    }
}

#[test]
fn a_custom_normalizer_decides_each_part() {
    let key = build(
        " Market ",
        " Price ",
        " btcusdt ",
        vec![(" Venue ", " Spot ")],
        KeyNormalizer::custom(UpperLowerUpper),
    );
    assert_eq!(key.namespace(), "MARKET");
    assert_eq!(key.name(), "price");
    assert_eq!(key.subject(), "BTCUSDT");
    assert_eq!(
        qualifiers_of(&key),
        vec![("Venue".to_owned(), "Spot".to_owned())],
        "unoverridden parts are trimmed only"
    );
    assert_eq!(format!("{:?}", key.normalizer()), "Custom(..)");
}

#[test]
fn qualifiers_are_order_independent_hashable_and_rendered_sorted() {
    let a = build(
        "market",
        "candles",
        "BTCUSDT",
        vec![("limit", "500"), ("interval", "1m")],
        KeyNormalizer::Preserve,
    );
    let b = build(
        "market",
        "candles",
        "BTCUSDT",
        vec![("interval", "1m"), ("limit", "500")],
        KeyNormalizer::Preserve,
    );
    assert_eq!(a, b);
    assert_eq!(hash_of(&a), hash_of(&b));
    assert_eq!(
        a.to_string(),
        "market:candles:BTCUSDT?interval=1m&limit=500"
    );
    assert_eq!(b.to_string(), a.to_string());
    assert_eq!(a.qualifier("interval"), Some("1m"));
    assert_eq!(a.qualifier("missing"), None);
    assert_eq!(
        qualifiers_of(&a),
        vec![
            ("interval".to_owned(), "1m".to_owned()),
            ("limit".to_owned(), "500".to_owned())
        ]
    );
    let set: HashSet<ResourceKey> = [a.clone(), b.clone()].into_iter().collect();
    assert_eq!(set.len(), 1);
    let mut map: KeyMap<u8> = KeyMap::default();
    map.insert(a, 1);
    assert_eq!(map.get(&b), Some(&1));
}

#[test]
fn numeric_qualifier_values_are_stored_as_text() {
    let numeric = build("m", "c", "s", vec![("limit", 500)], KeyNormalizer::Preserve);
    let text = build(
        "m",
        "c",
        "s",
        vec![("limit", "500")],
        KeyNormalizer::Preserve,
    );
    assert_eq!(numeric.qualifier("limit"), Some("500"));
    assert_eq!(numeric, text);
    let flag = ResourceKey::new("m", "c", "s")
        .unwrap()
        .with_qualifier("live", true)
        .unwrap();
    assert_eq!(flag.qualifier("live"), Some("true"));
}

#[test]
fn qualifier_helpers_return_new_keys_and_leave_the_base_unchanged() {
    let base = build(
        "m",
        "c",
        "s",
        vec![("interval", "1m")],
        KeyNormalizer::Preserve,
    );
    let updated = base
        .with_qualifiers([("limit", "100"), ("interval", "5m")])
        .unwrap();
    assert_eq!(
        qualifiers_of(&updated),
        vec![
            ("interval".to_owned(), "5m".to_owned()),
            ("limit".to_owned(), "100".to_owned())
        ]
    );
    assert_eq!(
        qualifiers_of(&base),
        vec![("interval".to_owned(), "1m".to_owned())]
    );
    let trimmed = updated.without_qualifiers(["limit"]).unwrap();
    assert_eq!(
        qualifiers_of(&trimmed),
        vec![("interval".to_owned(), "5m".to_owned())]
    );
    assert_eq!(
        updated.qualifier("limit"),
        Some("100"),
        "updated is unchanged"
    );

    let later_wins = base
        .with_qualifiers([("interval", "5m"), ("interval", "15m")])
        .unwrap();
    assert_eq!(later_wins.qualifier("interval"), Some("15m"));
    let removed_all = updated.without_qualifiers(["interval", "limit"]).unwrap();
    assert_eq!(removed_all, ResourceKey::new("m", "c", "s").unwrap());
    assert_eq!(removed_all.to_string(), "m:c:s");
}

#[test]
fn a_legacy_key_keeps_its_normalizer_for_qualifier_operations() {
    let key = build(
        "Market",
        "Candles",
        "btc",
        vec![("Interval", "1m")],
        KeyNormalizer::Legacy,
    );
    let with_limit = key.with_qualifiers([("LIMIT", 100)]).unwrap();
    assert_eq!(with_limit.qualifier("interval"), Some("1m"));
    assert_eq!(with_limit.qualifier("INTERVAL"), Some("1m"));
    assert_eq!(with_limit.qualifier("limit"), Some("100"));
    assert!(matches!(with_limit.normalizer(), KeyNormalizer::Legacy));
    let without = with_limit.without_qualifiers(["LIMIT"]).unwrap();
    assert_eq!(without.qualifier("limit"), None);
    assert_eq!(without.qualifier("Interval"), Some("1m"));
}

#[test]
fn duplicate_qualifiers_after_normalization_are_rejected() {
    let error = ResourceKey::with_normalizer(
        "m",
        "c",
        "s",
        [("Interval", "1m"), ("interval", "5m")],
        KeyNormalizer::Legacy,
    )
    .unwrap_err();
    assert_eq!(error, KeyError::DuplicateQualifier("interval".to_owned()));
    assert!(
        error.to_string().contains("duplicate qualifier name"),
        "{error}"
    );
    // Without folding the two names differ.
    assert!(ResourceKey::with_normalizer(
        "m",
        "c",
        "s",
        [("Interval", "1m"), ("interval", "5m")],
        KeyNormalizer::Preserve,
    )
    .is_ok());
}

#[test]
fn empty_namespace_name_and_qualifier_names_are_rejected() {
    for blank in ["", "   "] {
        let error = ResourceKey::new(blank, "name", "s").unwrap_err();
        assert_eq!(error, KeyError::EmptyNamespace);
        assert_eq!(error.to_string(), "namespace cannot be empty");
        let error = ResourceKey::new("ns", blank, "s").unwrap_err();
        assert_eq!(error, KeyError::EmptyName);
        assert_eq!(error.to_string(), "name cannot be empty");
        let error =
            ResourceKey::with_normalizer("ns", "nm", "", [(blank, "v")], KeyNormalizer::Preserve)
                .unwrap_err();
        assert_eq!(error.to_string(), "qualifier name cannot be empty");
        let base = ResourceKey::new("ns", "nm", "").unwrap();
        assert_eq!(
            base.with_qualifier(blank, "v").unwrap_err(),
            KeyError::EmptyQualifierName
        );
    }
}

#[test]
fn an_empty_subject_is_allowed_and_not_rendered() {
    let key = ResourceKey::new("ns", "name", "  ").unwrap();
    assert_eq!(key.subject(), "");
    assert_eq!(key.to_string(), "ns:name");
    let qualified = key.with_qualifier("k", "v").unwrap();
    assert_eq!(qualified.to_string(), "ns:name?k=v");
    assert_eq!(ResourceKey::parse("ns:name?k=v").unwrap(), qualified);
    assert_eq!(ResourceKey::parse("ns:name").unwrap(), key);
}

#[test]
fn reserved_qualifier_characters_are_form_encoded_and_parsed_back() {
    let key = build(
        "ns",
        "nm",
        "",
        vec![("a b", "x&y"), ("z", "1/2")],
        KeyNormalizer::Preserve,
    );
    assert_eq!(key.to_string(), "ns:nm?a+b=x%26y&z=1%2F2");
    assert_eq!(ResourceKey::parse("ns:nm?a+b=x%26y&z=1%2F2").unwrap(), key);

    let tricky = build(
        "ns",
        "nm",
        "s",
        vec![("q", "a=b&c?d%e+f über")],
        KeyNormalizer::Preserve,
    );
    let rendered = tricky.to_string();
    assert_eq!(rendered, "ns:nm:s?q=a%3Db%26c%3Fd%25e%2Bf+%C3%BCber");
    assert_eq!(rendered.parse::<ResourceKey>().unwrap(), tricky);
}

#[test]
fn malformed_renderings_are_rejected_by_parse() {
    for bad in [
        "nocolon",
        ":name",
        "ns:",
        "ns:nm?novalue",
        "ns:nm?a=%zz",
        "ns:nm?a=%4",
        "ns:nm?a=%FF",
        "ns:nm?=v",
    ] {
        assert!(ResourceKey::parse(bad).is_err(), "{bad:?} must not parse");
    }
    let error = ResourceKey::parse("nocolon").unwrap_err();
    assert!(matches!(error, KeyError::Parse { .. }));
    assert!(error.to_string().contains("\"nocolon\""), "{error}");
}

#[test]
fn the_normalizer_is_not_part_of_identity() {
    let legacy = ResourceKey::legacy("market", "price", "btc").unwrap();
    let preserved = ResourceKey::new("market", "price", "BTC").unwrap();
    assert_eq!(legacy, preserved);
    assert_eq!(hash_of(&legacy), hash_of(&preserved));
}

#[test]
fn keys_order_lexicographically_by_namespace_name_subject_then_qualifiers() {
    let mut keys = [
        ResourceKey::parse("b:a:a").unwrap(),
        ResourceKey::parse("a:b:a").unwrap(),
        ResourceKey::parse("a:a:b").unwrap(),
        ResourceKey::parse("a:a:a?z=1").unwrap(),
        ResourceKey::parse("a:a:a?b=2").unwrap(),
        ResourceKey::parse("a:a:a").unwrap(),
        ResourceKey::parse("a:a").unwrap(),
    ];
    keys.sort();
    let rendered: Vec<String> = keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "a:a",
            "a:a:a",
            "a:a:a?b=2",
            "a:a:a?z=1",
            "a:a:b",
            "a:b:a",
            "b:a:a"
        ]
    );
}

fn fold(text: &str) -> String {
    // The matrix inputs only need the two folds that differ from lowercase.
    text.trim().to_lowercase().replace('ß', "ss")
}

/// One matrix input: namespace, name, subject and two qualifiers.
type MatrixInput = (String, String, String, (String, String), (String, String));

/// 40 inputs mixing case, whitespace, non-ASCII text and reserved characters.
fn matrix_inputs() -> Vec<MatrixInput> {
    let namespaces = [" Market ", "tenant-A", "ÉCOLE", "Straße", "n.s_1"];
    let names = ["Price", " DocumentId ", "candles", "ÜBER"];
    let subjects = ["BTCUSDT", " /Path/File ", "", "a:b", "eth-usd", "Grüße"];
    let qualifier_names = ["Interval", " venue ", "limit", "a b", "x/y"];
    let qualifier_values = [" 1m ", "Spot", "500", "x&y", "100%", "Über ", "=", "a+b"];
    (0..40)
        .map(|i| {
            let first_name = qualifier_names[i % qualifier_names.len()];
            let second_name = format!(
                "{}2",
                qualifier_names[(i + 2) % qualifier_names.len()].trim()
            );
            (
                namespaces[i % namespaces.len()].to_owned(),
                names[(i / 2) % names.len()].to_owned(),
                subjects[(i / 3) % subjects.len()].to_owned(),
                (
                    first_name.to_owned(),
                    qualifier_values[i % qualifier_values.len()].to_owned(),
                ),
                (
                    second_name,
                    qualifier_values[(i + 3) % qualifier_values.len()].to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_identity_matrix_rebuilds_equal_keys_from_their_own_fields() {
    let normalizers = [
        KeyNormalizer::Preserve,
        KeyNormalizer::Legacy,
        KeyNormalizer::CaseInsensitive,
    ];
    let mut cases = 0;
    for (ns, name, subject, q1, q2) in matrix_inputs() {
        for normalizer in &normalizers {
            let qualifiers = vec![
                (q1.0.as_str(), q1.1.as_str()),
                (q2.0.as_str(), q2.1.as_str()),
            ];
            let key = build(&ns, &name, &subject, qualifiers, normalizer.clone());
            let context = format!("{normalizer:?} {key}");

            let mut own: Vec<(String, String)> = qualifiers_of(&key);
            own.reverse();
            let rebuilt = ResourceKey::with_normalizer(
                key.namespace(),
                key.name(),
                key.subject(),
                own,
                normalizer.clone(),
            )
            .unwrap();
            assert_eq!(rebuilt, key, "{context}");
            assert_eq!(hash_of(&rebuilt), hash_of(&key), "{context}");
            assert_eq!(key.qualifiers().len(), 2, "{context}");
            assert!(key.to_string().contains('?'), "{context}");
            let parsed = ResourceKey::parse(&key.to_string()).unwrap();
            assert_eq!(parsed, key, "{context}: parse(render) round trip");
            assert_eq!(hash_of(&parsed), hash_of(&key), "{context}");

            let (expect_ns, expect_name, expect_subject, expect_q1) = match normalizer {
                KeyNormalizer::Legacy => (
                    ns.trim().to_lowercase(),
                    name.trim().to_lowercase(),
                    subject.trim().to_uppercase(),
                    (q1.0.trim().to_lowercase(), q1.1.trim().to_owned()),
                ),
                KeyNormalizer::CaseInsensitive => (
                    fold(&ns),
                    fold(&name),
                    fold(&subject),
                    (fold(&q1.0), fold(&q1.1)),
                ),
                _ => (
                    ns.trim().to_owned(),
                    name.trim().to_owned(),
                    subject.trim().to_owned(),
                    (q1.0.trim().to_owned(), q1.1.trim().to_owned()),
                ),
            };
            assert_eq!(key.namespace(), expect_ns, "{context}");
            assert_eq!(key.name(), expect_name, "{context}");
            assert_eq!(key.subject(), expect_subject, "{context}");
            assert_eq!(
                key.qualifier(&q1.0),
                Some(expect_q1.1.as_str()),
                "{context}"
            );
            assert!(
                qualifiers_of(&key).iter().any(|(k, _)| *k == expect_q1.0),
                "{context}"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 120);
}

#[test]
fn renderings_are_unambiguous_for_reserved_path_characters() {
    let colon_in_namespace = ResourceKey::new("a:b", "c", "").unwrap();
    let colon_in_name = ResourceKey::new("a", "b:c", "").unwrap();
    let plain = ResourceKey::new("a", "b", "c").unwrap();
    assert_ne!(colon_in_namespace, plain);
    assert_ne!(
        colon_in_namespace.to_string(),
        plain.to_string(),
        "unequal keys must render differently"
    );
    assert_ne!(colon_in_name.to_string(), plain.to_string());
    let question_in_subject = ResourceKey::new("ns", "nm", "what?").unwrap();
    for key in [colon_in_namespace, colon_in_name, question_in_subject] {
        assert_eq!(ResourceKey::parse(&key.to_string()).ok(), Some(key));
    }
}

#[test]
fn percent_escapes_must_be_two_hex_digits() {
    assert!(ResourceKey::parse("ns:nm?a=%+1").is_err());
    assert!(ResourceKey::parse("ns:nm?a=%+F").is_err());
}
