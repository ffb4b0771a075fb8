//! Container names: Docker allows `[a-zA-Z0-9][a-zA-Z0-9_.-]+`. Default names are derived
//! from the command, like nussl's, and made unique with a random suffix.

/// Replaces every disallowed character with `-`, collapses runs, trims to 60 characters and
/// makes sure the name starts with an alphanumeric character.
pub fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    let trimmed: String = out
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(60)
        .collect();
    let trimmed = trimmed.trim_end_matches(['-', '.', '_']).to_string();
    match trimmed.len() {
        0 => "labhost".into(),
        1 => format!("{trimmed}0"),
        _ => trimmed,
    }
}

/// `labhost-<first words of the command>-<random>`.
pub fn from_command(cmd: &[String]) -> String {
    let words: Vec<&str> = cmd
        .iter()
        .flat_map(|w| w.split_whitespace())
        .filter(|w| !matches!(*w, "sh" | "-c" | "bash"))
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .take(2)
        .collect();
    let slug = sanitize(&words.join("-").to_lowercase());
    let slug: String = slug.chars().take(40).collect();
    format!(
        "labhost-{slug}-{}",
        crate::modules::util::make_random_string(6).to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(n: &str) -> bool {
        let mut c = n.chars();
        c.next().is_some_and(|f| f.is_ascii_alphanumeric())
            && n.len() >= 2
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }

    #[test]
    fn names_follow_docker_rules_and_are_unique() {
        for raw in ["My Job #1!", "--weird--", "ünïcode name", "a", "", "x/y:z"] {
            let s = sanitize(raw);
            assert!(valid(&s), "{raw:?} -> {s:?}");
        }
        assert_eq!(sanitize("My Job #1!"), "My-Job-1");
        let cmd = vec![
            "sh".to_string(),
            "-c".to_string(),
            "python /code/train.py --lr 0.1".to_string(),
        ];
        let a = from_command(&cmd);
        let b = from_command(&cmd);
        assert!(a.starts_with("labhost-python-train.py-"), "{a}");
        assert!(valid(&a));
        assert_ne!(a, b);
    }
}
