//! The shipped default rule pack loads without a single error.

#[test]
fn the_default_pack_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("default");
    let rules = rules::load_dir(&dir).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(rules.len() >= 28, "{}", rules.len());
}
