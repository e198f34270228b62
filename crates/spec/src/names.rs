//! Naming rules. Names end up as hostnames, interface and directory names, Ansible
//! group names and apt arguments, so each rule is the narrowest that is safe there.

use crate::error::{ErrorKind, SpecError};

/// One naming rule: allowed first and following characters and a length limit.
pub(crate) struct NameRule {
    /// What is being named, for messages ("node name").
    pub what: &'static str,
    /// The rule as a pattern, for messages.
    pub pattern: &'static str,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    min_len: usize,
    max_len: usize,
    /// Hostnames may not end with '-' (RFC 1123).
    no_trailing_hyphen: bool,
}

fn lower_alpha(c: char) -> bool {
    c.is_ascii_lowercase()
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Node names become hostnames inside the nodes and in /etc/hosts.
pub(crate) const HOSTNAME: NameRule = NameRule {
    what: "node name",
    pattern: "[a-z][a-z0-9-]*",
    first: lower_alpha,
    rest: |c| lower_alnum(c) || c == '-',
    min_len: 1,
    max_len: 32,
    no_trailing_hyphen: true,
};

/// Network names become part of bridge names and are written in /etc/hosts comments.
pub(crate) const NETWORK: NameRule = NameRule {
    what: "network name",
    ..HOSTNAME
};

/// Groups become Ansible inventory groups, which allow '_' but not '-' in some
/// tools; both are accepted and left to the user.
pub(crate) const GROUP: NameRule = NameRule {
    what: "group name",
    pattern: "[a-z][a-z0-9_-]*",
    first: lower_alpha,
    rest: |c| lower_alnum(c) || c == '_' || c == '-',
    min_len: 1,
    max_len: 64,
    no_trailing_hyphen: false,
};

/// Image names become directory and file names in the image cache.
pub(crate) const IMAGE: NameRule = NameRule {
    what: "image name",
    pattern: "[a-z0-9][a-z0-9._-]*",
    first: lower_alnum,
    rest: |c| lower_alnum(c) || c == '.' || c == '_' || c == '-',
    min_len: 1,
    max_len: 64,
    no_trailing_hyphen: false,
};

/// Debian suites (`bookworm`, `stable`, `trixie-backports`) are passed to debootstrap.
pub(crate) const SUITE: NameRule = NameRule {
    what: "suite",
    pattern: "[a-z][a-z0-9-]*",
    max_len: 64,
    ..HOSTNAME
};

/// An archive component (`main`, `universe`) is written into sources lists.
pub(crate) const COMPONENT: NameRule = NameRule {
    what: "component",
    ..SUITE
};

/// Debian policy §5.6.1: at least two characters, lowercase alphanumerics and `+-.`.
pub(crate) const DEBIAN_PACKAGE: NameRule = NameRule {
    what: "package name",
    pattern: "[a-z0-9][a-z0-9+.-]+",
    first: lower_alnum,
    rest: |c| lower_alnum(c) || c == '+' || c == '.' || c == '-',
    min_len: 2,
    max_len: 128,
    no_trailing_hyphen: false,
};

impl NameRule {
    fn is_valid(&self, name: &str) -> bool {
        let mut chars = name.chars();
        let len = name.chars().count();
        chars.next().is_some_and(self.first)
            && chars.all(self.rest)
            && (self.min_len..=self.max_len).contains(&len)
            && !(self.no_trailing_hyphen && name.ends_with('-'))
    }

    /// Refuses `name` with a message stating the rule and, when one can be made, a
    /// valid name close to it.
    pub(crate) fn validate(&self, name: &str) -> Result<(), SpecError> {
        if self.is_valid(name) {
            return Ok(());
        }
        let ending = if self.no_trailing_hyphen {
            ", not ending with '-'"
        } else {
            ""
        };
        let message = format!(
            "invalid {} \"{}\": it must match {}{ending}, {}",
            self.what,
            name.escape_default(),
            self.pattern,
            self.length_rule(),
        );
        let hint = match self.suggest(name) {
            Some(suggestion) => format!("use a name like \"{suggestion}\""),
            None => format!(
                "use lowercase ASCII letters and digits, starting with {}",
                if (self.first)('0') {
                    "a letter or digit"
                } else {
                    "a letter"
                }
            ),
        };
        Err(SpecError::new(ErrorKind::InvalidName, message).with_hint(hint))
    }

    fn length_rule(&self) -> String {
        if self.min_len > 1 {
            format!("{} to {} characters", self.min_len, self.max_len)
        } else {
            format!("at most {} characters", self.max_len)
        }
    }

    /// The name lowercased, with invalid characters turned into '-' and trimmed to
    /// the rule; `None` when nothing valid is left.
    fn suggest(&self, name: &str) -> Option<String> {
        let mapped: String = name
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if (self.rest)(c) { c } else { '-' })
            .collect();
        // Dropping a leading digit or symbol would change the name beyond recognition.
        if !mapped.starts_with(self.first) {
            return None;
        }
        let mut suggestion: String = mapped.chars().take(self.max_len).collect();
        while self.no_trailing_hyphen && suggestion.ends_with('-') {
            suggestion.pop();
        }
        (self.is_valid(&suggestion) && suggestion != name).then_some(suggestion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for good in ["a", "web1", "db-primary", &"a".repeat(32)] {
            assert!(HOSTNAME.is_valid(good), "{good}");
        }
        for bad in ["", "1web", "Web", "web_1", "web-", "wéb", &"a".repeat(33)] {
            assert!(!HOSTNAME.is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn suggestions_are_valid_names() {
        assert_eq!(HOSTNAME.suggest("Web_1").as_deref(), Some("web-1"));
        assert_eq!(HOSTNAME.suggest("1st-node"), None);
        assert_eq!(HOSTNAME.suggest("db-").as_deref(), Some("db"));
        assert_eq!(HOSTNAME.suggest("123"), None);
        let error = HOSTNAME.validate("Web_1").expect_err("refused");
        assert!(error.message().contains("[a-z][a-z0-9-]*"), "{error}");
        assert_eq!(error.hint(), Some("use a name like \"web-1\""));
    }

    #[test]
    fn images_groups_and_packages() {
        assert!(IMAGE.is_valid("debian-12"));
        assert!(IMAGE.is_valid("12.1_x"));
        assert!(!IMAGE.is_valid("-x"));
        assert!(GROUP.is_valid("web_servers"));
        assert!(!GROUP.is_valid("_web"));
        assert!(DEBIAN_PACKAGE.is_valid("libstdc++6"));
        assert!(DEBIAN_PACKAGE.is_valid("0ad"));
        assert!(!DEBIAN_PACKAGE.is_valid("x"));
        assert!(!DEBIAN_PACKAGE.is_valid("Nginx"));
        assert!(!DEBIAN_PACKAGE.is_valid("nginx; rm -rf /"));
    }
}
