//! A small Rust tokenizer for the public API scanner.
//!
//! It understands just enough of the lexical grammar to find item
//! declarations reliably: comments (line, nested block and doc comments) are
//! dropped, string, raw string, byte string and character literals become
//! single opaque tokens (so braces inside them never confuse the brace
//! counting of the parser), and lifetimes are told apart from character
//! literals. Punctuation is kept one character per token except `::`, `->`
//! and `=>`, so `<` and `>` can be counted as generic brackets in types.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword, including raw identifiers (`r#type`).
    Ident,
    /// A lifetime or label, such as `'a` or `'static`.
    Lifetime,
    /// A string, character or numeric literal, kept verbatim.
    Literal,
    /// Punctuation: one character, or one of `::`, `->`, `=>`.
    Punct,
}

/// One token with its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token's kind.
    pub kind: Kind,
    /// The token's text.
    pub text: String,
}

impl Token {
    /// Whether this token is the identifier or punctuation `text`.
    pub fn is(&self, text: &str) -> bool {
        self.kind != Kind::Literal && self.text == text
    }

    /// Whether this token is an identifier (keywords included).
    pub fn is_ident(&self) -> bool {
        self.kind == Kind::Ident
    }
}

/// Splits `src` into tokens, dropping whitespace and comments.
///
/// Malformed input (an unterminated string or comment) never panics: the
/// rest of the file is swallowed into the open token, which at worst hides
/// some items from the scan.
pub fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = skip_block_comment(&chars, i);
        } else if let Some(end) = string_literal_end(&chars, i) {
            out.push(token(Kind::Literal, &chars[i..end]));
            i = end;
        } else if c == '\'' {
            let end = quote_end(&chars, i);
            let kind = if chars.get(end - 1) == Some(&'\'') && end - i > 2 {
                Kind::Literal
            } else {
                Kind::Lifetime
            };
            out.push(token(kind, &chars[i..end]));
            i = end;
        } else if is_ident_start(c) {
            let mut end = i + 1;
            // Raw identifiers: `r#name`.
            if c == 'r' && next == Some('#') && chars.get(i + 2).is_some_and(|&c| is_ident_start(c))
            {
                end = i + 2;
            }
            while end < chars.len() && is_ident_continue(chars[end]) {
                end += 1;
            }
            out.push(token(Kind::Ident, &chars[i..end]));
            i = end;
        } else if c.is_ascii_digit() {
            let mut end = i + 1;
            while end < chars.len()
                && (is_ident_continue(chars[end])
                    || (chars[end] == '.' && chars.get(end + 1).is_some_and(char::is_ascii_digit)))
            {
                end += 1;
            }
            out.push(token(Kind::Literal, &chars[i..end]));
            i = end;
        } else {
            let pair: Option<&str> = match (c, next) {
                (':', Some(':')) => Some("::"),
                ('-', Some('>')) => Some("->"),
                ('=', Some('>')) => Some("=>"),
                _ => None,
            };
            match pair {
                Some(text) => {
                    out.push(Token {
                        kind: Kind::Punct,
                        text: text.to_owned(),
                    });
                    i += 2;
                }
                None => {
                    out.push(token(Kind::Punct, &chars[i..=i]));
                    i += 1;
                }
            }
        }
    }
    out
}

fn token(kind: Kind, chars: &[char]) -> Token {
    Token {
        kind,
        text: chars.iter().collect(),
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Index just past a (possibly nested) block comment starting at `start`.
fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// If a string literal (`"…"`, `r#"…"#`, `b"…"`, `br"…"`, `c"…"`, `b'x'`)
/// starts at `i`, the index just past it.
fn string_literal_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    // Optional prefix: b, c, r, br, cr.
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    let raw = chars.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    if j > i && !raw && chars.get(j) == Some(&'\'') && chars[i] == 'b' && j == i + 1 {
        // Byte character literal.
        return Some(quote_end(chars, j));
    }
    let mut hashes = 0;
    if raw {
        while chars.get(j) == Some(&'#') {
            hashes += 1;
            j += 1;
        }
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    // A lone prefix letter followed by a quote must start the token: make
    // sure we are not in the middle of an identifier such as `attr"`.
    j += 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if !raw => j += 2,
            '"' => {
                let closing = chars[j + 1..].iter().take_while(|&&c| c == '#').count();
                if !raw || closing >= hashes {
                    return Some((j + 1 + hashes).min(chars.len()));
                }
                j += 1;
            }
            _ => j += 1,
        }
    }
    Some(chars.len())
}

/// Index just past a character literal or lifetime starting with `'` at `i`.
fn quote_end(chars: &[char], i: usize) -> usize {
    match chars.get(i + 1) {
        Some('\\') => {
            let mut j = i + 3;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            (j + 1).min(chars.len())
        }
        Some(_) if chars.get(i + 2) == Some(&'\'') => i + 3,
        _ => {
            let mut j = i + 1;
            while j < chars.len() && is_ident_continue(chars[j]) {
                j += 1;
            }
            j
        }
    }
}

/// Renders tokens as compact, deterministic Rust-like text, e.g.
/// `fn get(&self, key: &ResourceKey) -> Option<&SnapshotValue>`.
///
/// The output depends only on the token sequence, never on the original
/// formatting, so reformatting the source does not change the manifest.
pub fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Token> = None;
    for (index, tok) in tokens.iter().enumerate() {
        // Trailing commas depend on line breaks (rustfmt adds them to
        // multi-line lists), so they are dropped.
        if tok.is(",")
            && tokens
                .get(index + 1)
                .is_none_or(|next| [")", "]", ">", "}", "{"].iter().any(|c| next.is(c)))
        {
            continue;
        }
        if prev.is_some_and(|p| space_between(p, tok)) {
            out.push(' ');
        }
        out.push_str(&tok.text);
        prev = Some(tok);
    }
    out
}

/// Whether a space separates `prev` and `next` in [`render`]'s output.
fn space_between(prev: &Token, next: &Token) -> bool {
    let p = prev.text.as_str();
    if prev.kind == Kind::Punct
        && matches!(
            p,
            "::" | "(" | "[" | "<" | "&" | "*" | "!" | "?" | "#" | "."
        )
    {
        return false;
    }
    match next.text.as_str() {
        _ if next.kind != Kind::Punct => true,
        "::" | ")" | "]" | "," | ";" | ">" | ":" | "." => false,
        "(" | "<" => !(prev.kind == Kind::Ident || p == ">"),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn drops_comments_and_keeps_literals_whole() {
        let toks = texts("a /* x /* nested */ { */ b // }\n \"{\" r#\"}\"# 'c' '\\n' 'a");
        assert_eq!(toks, ["a", "b", "\"{\"", "r#\"}\"#", "'c'", "'\\n'", "'a"]);
        let kinds: Vec<Kind> = tokenize("'a 'b' b'{' x::y->z")
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                Kind::Lifetime,
                Kind::Literal,
                Kind::Literal,
                Kind::Ident,
                Kind::Punct,
                Kind::Ident,
                Kind::Punct,
                Kind::Ident
            ]
        );
    }

    #[test]
    fn renders_signatures_compactly() {
        let src = "fn get < 'a > ( & 'a self , key : & ResourceKey ) -> Option < & 'a Value > where T : Send + 'static";
        assert_eq!(
            render(&tokenize(src)),
            "fn get<'a>(&'a self, key: &ResourceKey) -> Option<&'a Value> where T: Send + 'static"
        );
        assert_eq!(
            render(&tokenize(
                "fn f(x: impl Fn(u32) -> bool, y: [u8; 4], z: &mut dyn Tr)"
            )),
            "fn f(x: impl Fn(u32) -> bool, y: [u8; 4], z: &mut dyn Tr)"
        );
    }
}
