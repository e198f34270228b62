//! Text matchers: how checks say what output, bodies and file contents must (or
//! must not) hold.
//!
//! A matcher is a plain substring, or `/regex/`; a leading `!` negates either.
//! Both search the whole text: a substring anywhere, a regex with Python's
//! `re.search` in multi-line mode, so `^` and `$` match at the start and end
//! of every line (`\A` and `\Z` at the start and end of the text).
//! Regexes are run on the nodes by Python's `re` module, so they are checked here
//! with the Rust regex parser and then refused where Python would read them
//! differently or not at all. Constructs only Python has (lookaround,
//! backreferences, `\Z`, ...) cannot be checked here and are passed through.

use std::fmt;

use regex_syntax::ast::{self, AssertionKind, Ast, ClassSetItem, Flag, FlagsItemKind, GroupKind};

use crate::error::{ErrorKind, SpecError};

/// One parsed matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// `!` was written: the text must not match.
    pub negated: bool,
    pub pattern: Pattern,
}

/// What a matcher looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// The text contains this string.
    Substring(String),
    /// Python's `re.search` finds this regex (written without its slashes),
    /// compiled with `re.MULTILINE`: `^` and `$` match at line boundaries.
    Regex(String),
}

impl Matcher {
    /// Parses and checks a matcher as written in a check, e.g. `!/error \d+/`.
    pub fn parse(text: &str) -> Result<Matcher, SpecError> {
        let (negated, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            let message = if negated {
                "the matcher \"!\" negates an empty text, so it never matches"
            } else {
                "an empty matcher matches any text"
            };
            return Err(SpecError::new(ErrorKind::InvalidValue, message)
                .with_hint("write the text to look for, or remove this matcher"));
        }
        let regex = body
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix('/'));
        let pattern = match regex {
            Some("") => return Err(SpecError::new(
                ErrorKind::InvalidValue,
                "the regex // is empty and matches any text",
            )
            .with_hint(
                "write a pattern between the slashes; to look for the text \"//\", write /\\/\\//",
            )),
            Some(regex) => {
                validate_regex(regex)?;
                Pattern::Regex(regex.to_owned())
            }
            None => Pattern::Substring(body.to_owned()),
        };
        Ok(Matcher { negated, pattern })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        match &self.pattern {
            Pattern::Substring(text) => f.write_str(text),
            Pattern::Regex(regex) => write!(f, "/{regex}/"),
        }
    }
}

/// Refuses a regex that Python's `re` would not compile, or would read otherwise
/// than it looks, as far as the Rust parser can tell.
fn validate_regex(regex: &str) -> Result<(), SpecError> {
    let ast = match ast::parse::Parser::new().parse(regex) {
        Ok(ast) => ast,
        Err(error) if python_only(regex, &error) => return Ok(()),
        Err(error) => {
            let at = regex[..error.span().start.offset].chars().count() + 1;
            return Err(invalid_regex(
                regex,
                &format!("{} (at character {at})", error.kind()),
                "fix the pattern; matchers use Python's re syntax",
            ));
        }
    };
    let problem = ast::visit(&ast, PythonCompat::default())
        .unwrap_or_default()
        .or_else(|| flags_problem(&ast, leading_flags(&ast)));
    if let Some((offset, what, hint)) = problem {
        let at = regex[..offset].chars().count() + 1;
        return Err(invalid_regex(
            regex,
            &format!(
                "{what} (at character {at}) is not supported by Python's re, which runs the check"
            ),
            hint,
        ));
    }
    Ok(())
}

fn invalid_regex(regex: &str, why: &str, hint: &str) -> SpecError {
    SpecError::new(
        ErrorKind::InvalidValue,
        format!("invalid regex /{regex}/: {why}"),
    )
    .with_hint(hint)
}

/// Whether the Rust parser refused `regex` for a construct Python's `re` has:
/// such a regex is left for the node to compile.
fn python_only(regex: &str, error: &ast::Error) -> bool {
    let rest = &regex[error.span().start.offset..];
    match error.kind() {
        ast::ErrorKind::UnsupportedLookAround
        | ast::ErrorKind::UnsupportedBackreference
        // `{,n}`: Python reads it as `{0,n}`.
        | ast::ErrorKind::RepetitionCountDecimalEmpty => true,
        // `\Z` (end of text) and `\N{NAME}`.
        ast::ErrorKind::EscapeUnrecognized => rest.starts_with("\\Z") || rest.starts_with("\\N{"),
        // `(?>` atomic group, `(?P=name)` backreference, `(?#` comment,
        // `(?(1)` conditional, and the `a` and `L` flags. The span starts at the
        // character after `(?`.
        ast::ErrorKind::FlagUnrecognized => {
            [">", "P=", "#", "(", "a", "L"].iter().any(|p| rest.starts_with(p))
        }
        _ => false,
    }
}

/// How many leading items of the regex are flag settings like `(?i)`: Python
/// accepts global flags only at the very start.
fn leading_flags(ast: &Ast) -> usize {
    match ast {
        Ast::Flags(_) => 1,
        Ast::Concat(concat) => concat
            .asts
            .iter()
            .take_while(|item| matches!(item, Ast::Flags(_)))
            .count(),
        _ => 0,
    }
}

/// Global flags not at the start, or negated (`(?-i)`): both refused by Python.
fn flags_problem(ast: &Ast, leading: usize) -> Option<Problem> {
    let items: &[Ast] = match ast {
        Ast::Concat(concat) => &concat.asts,
        other => std::slice::from_ref(other),
    };
    for (i, item) in items.iter().enumerate() {
        let Ast::Flags(set) = item else { continue };
        if i >= leading {
            return Some((
                set.span.start.offset,
                "a flag group like (?i) after the start of the pattern",
                "move the flags to the very start, or scope them: (?i:text)",
            ));
        }
        if set
            .flags
            .items
            .iter()
            .any(|f| f.kind == FlagsItemKind::Negation)
        {
            return Some((
                set.span.start.offset,
                "turning a flag off for the whole pattern, like (?-i)",
                "leave the flag out, or turn it off for a part: (?-i:text)",
            ));
        }
    }
    None
}

/// Where in the pattern (byte offset) a construct Python lacks is, what it is,
/// and how to write it instead.
type Problem = (usize, &'static str, &'static str);

/// Finds the first construct that Python's `re` lacks or reads differently.
/// Flag groups at the top level are judged by [`flags_problem`]; inside a group
/// they are always refused.
#[derive(Default)]
struct PythonCompat {
    problem: Option<Problem>,
    /// Brackets open around the current node.
    depth: usize,
    /// Groups open around the current node.
    groups: usize,
}

impl PythonCompat {
    fn found(&mut self, offset: usize, what: &'static str, hint: &'static str) {
        self.problem.get_or_insert((offset, what, hint));
    }

    fn validate_flags(&mut self, flags: &ast::Flags) {
        for item in &flags.items {
            if let FlagsItemKind::Flag(Flag::SwapGreed | Flag::CRLF) = item.kind {
                self.found(
                    item.span.start.offset,
                    "the flag U or R",
                    "use the flags Python knows: i, m, s, x",
                );
            }
        }
    }

    fn validate_class_item(&mut self, item: &ClassSetItem) {
        match item {
            ClassSetItem::Unicode(class) => self.found(
                class.span.start.offset,
                "a Unicode class like \\pL",
                "list the characters or use \\w, \\d, \\s",
            ),
            ClassSetItem::Ascii(class) => self.found(
                class.span.start.offset,
                "a POSIX class like [:alpha:]",
                "write the range instead, e.g. [a-zA-Z] for [[:alpha:]]",
            ),
            ClassSetItem::Literal(literal) => self.validate_literal(literal),
            ClassSetItem::Range(range) => {
                self.validate_literal(&range.start);
                self.validate_literal(&range.end);
            }
            _ => {}
        }
    }

    fn validate_literal(&mut self, literal: &ast::Literal) {
        if let ast::LiteralKind::HexBrace(_) = literal.kind {
            self.found(
                literal.span.start.offset,
                "an escape with braces like \\x{41}",
                "write \\xHH, \\uHHHH or \\UHHHHHHHH",
            );
        }
    }
}

impl ast::Visitor for PythonCompat {
    type Output = Option<Problem>;
    type Err = ();

    fn finish(self) -> Result<Option<Problem>, ()> {
        Ok(self.problem)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
        match ast {
            Ast::ClassUnicode(class) => self.found(
                class.span.start.offset,
                "a Unicode class like \\pL",
                "list the characters or use \\w, \\d, \\s",
            ),
            Ast::Literal(literal) => self.validate_literal(literal),
            Ast::Assertion(assertion) => match assertion.kind {
                AssertionKind::StartLine
                | AssertionKind::EndLine
                | AssertionKind::StartText
                | AssertionKind::WordBoundary
                | AssertionKind::NotWordBoundary => {}
                AssertionKind::EndText => self.found(
                    assertion.span.start.offset,
                    "\\z",
                    "write \\Z for the end of the text",
                ),
                _ => self.found(
                    assertion.span.start.offset,
                    "a word-start or word-end assertion like \\< or \\b{end}",
                    "use \\b",
                ),
            },
            Ast::Flags(set) => {
                self.validate_flags(&set.flags);
                if self.groups > 0 {
                    self.found(
                        set.span.start.offset,
                        "a flag group like (?i) after the start of the pattern",
                        "move the flags to the very start, or scope them: (?i:text)",
                    );
                }
            }
            Ast::Group(group) => {
                self.groups += 1;
                match &group.kind {
                    GroupKind::CaptureName {
                        starts_with_p: false,
                        ..
                    } => self.found(
                        group.span.start.offset,
                        "a named group written (?<name>...)",
                        "write (?P<name>...)",
                    ),
                    GroupKind::CaptureName { name, .. }
                        if name.name.starts_with(|c: char| c.is_ascii_digit())
                            || !name.name.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                    {
                        self.found(
                            name.span.start.offset,
                            "a group name that is not an identifier",
                            "name the group with letters, digits and _, not starting with a digit",
                        )
                    }
                    GroupKind::NonCapturing(flags) => self.validate_flags(flags),
                    _ => {}
                }
            }
            Ast::ClassBracketed(class) => {
                if self.depth > 0 {
                    self.found(
                        class.span.start.offset,
                        "a class nested in a class, like [a[bc]]",
                        "write one class: [abc]",
                    );
                }
                self.depth += 1;
            }
            Ast::Repetition(repetition) => {
                // Python reads `a*+` as possessive but refuses any other repeat
                // of a repeat (`a**`, `a{2}{3}`).
                let possessive =
                    repetition.greedy && repetition.op.kind == ast::RepetitionKind::OneOrMore;
                if matches!(*repetition.ast, Ast::Repetition(_)) && !possessive {
                    self.found(
                        repetition.op.span.start.offset,
                        "a repetition of a repetition, like a**",
                        "group the inner part first: (?:a*)*",
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_post(&mut self, ast: &Ast) -> Result<(), ()> {
        match ast {
            Ast::ClassBracketed(_) => self.depth -= 1,
            Ast::Group(_) => self.groups -= 1,
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
        if let ClassSetItem::Bracketed(class) = item {
            self.found(
                class.span.start.offset,
                "a class nested in a class, like [a[bc]]",
                "write one class: [abc]",
            );
        }
        self.validate_class_item(item);
        Ok(())
    }

    fn visit_class_set_binary_op_pre(&mut self, op: &ast::ClassSetBinaryOp) -> Result<(), ()> {
        self.found(
            op.span.start.offset,
            "a class operation like && or --",
            "list the characters the class should hold",
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(text: &str) -> Pattern {
        Pattern::Regex(text.to_owned())
    }

    #[test]
    fn substrings_regexes_and_negation() {
        let parse = |text| Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            parse("served by"),
            Matcher {
                negated: false,
                pattern: Pattern::Substring("served by".into())
            }
        );
        assert_eq!(parse("/web[12]/").pattern, regex("web[12]"));
        let negated = parse("!/error \\d+/");
        assert!(negated.negated);
        assert_eq!(negated.pattern, regex("error \\d+"));
        assert_eq!(negated.to_string(), "!/error \\d+/");
        // A path is a substring: it does not end with a slash.
        assert_eq!(
            parse("/etc/passwd").pattern,
            Pattern::Substring("/etc/passwd".into())
        );
        assert_eq!(parse("/").pattern, Pattern::Substring("/".into()));
    }

    #[test]
    fn python_constructs_pass() {
        for ok in [
            r"(?=a)b",
            r"(a)\1",
            r"(?P<n>a)(?P=n)",
            r"end\Z",
            r"a{,3}",
            r"(?>a)",
            r"(?#comment)a",
            r"(?i)(?m)^a",
            r"(?i:a)b",
            r"(?-i:a)",
            r"a*+",
            r"[]a]",
            r"\x41\u0041",
            r"\bword\B",
        ] {
            assert!(Matcher::parse(&format!("/{ok}/")).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_python_lacks_or_reads_otherwise() {
        for (bad, words) in [
            (r"web[12", "unclosed character class"),
            (r"\pL", "Unicode class"),
            (r"[[:alpha:]]", "POSIX class"),
            (r"[a[bc]]", "nested"),
            (r"[a&&b]", "class operation"),
            (r"end\z", "\\z"),
            (r"\x{41}", "braces"),
            (r"(?<n>a)", "(?<name>"),
            (r"a(?i)b", "after the start"),
            (r"(a(?i)b)", "after the start"),
            (r"(?-i)a", "turning a flag off"),
            (r"(?U)a*", "flag U or R"),
            (r"\<word", "word-start"),
            (r"a**", "repetition of a repetition"),
            (r"a{2}{3}", "repetition of a repetition"),
        ] {
            let error = Matcher::parse(&format!("/{bad}/"))
                .expect_err(bad)
                .to_string();
            assert!(error.contains(words), "{bad}: {error}");
        }
        assert!(Matcher::parse("").is_err());
        assert!(Matcher::parse("!").is_err());
        assert!(Matcher::parse("//").is_err());
    }

    #[test]
    fn position_counts_characters() {
        let error = Matcher::parse("/é(?U)/").expect_err("refused");
        assert!(error.message().contains("at character 4"), "{error}");
    }
}
