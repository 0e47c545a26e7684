//! Argument conditions: a small expression language over a tool call's
//! arguments, used by policy rules to *add* approval (`amount > 100`,
//! `currency != "USD"`, `domain(to) not in ["example.com"]`).
//!
//! ```text
//! expr     := and ("or" and)*
//! and      := unary ("and" unary)*
//! unary    := "not" unary | compare
//! compare  := operand (("==" | "!=" | ">" | ">=" | "<" | "<=" | "in" | "not in" | "contains") operand)?
//! operand  := path | string | number | "true" | "false" | "null" | list | call | "(" expr ")"
//! path     := name ("." name | "[" integer "]")*       e.g. amount, invoice.lines[0].total
//! call     := ("exists" | "len" | "domain" | "lower") "(" operand ")"
//! list     := "[" (operand ("," operand)*)? "]"
//! ```
//!
//! Pure and deterministic. A path that is missing evaluates to `null`;
//! comparing values of different types is an error, and the policy treats
//! an error as "needs approval" (fail-closed).

use serde_json::Value;
use std::fmt;

/// A parsed condition, with its source text for rules and errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// Where and why a condition does not parse. `offset` is a byte offset into
/// the condition's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the problem in the condition text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Box<Expr>, Op, Box<Expr>),
    Path(Vec<Step>),
    Literal(Value),
    List(Vec<Expr>),
    Call(Function, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Function {
    Exists,
    Len,
    Domain,
    Lower,
}

impl Condition {
    /// Parses a condition.
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens,
            position: 0,
            end: source.len(),
        };
        let expr = parser.expr()?;
        if let Some(token) = parser.peek() {
            return Err(ParseError {
                offset: token.offset,
                message: format!("unexpected `{}` after a complete condition", token.text),
            });
        }
        Ok(Self {
            source: source.to_string(),
            expr,
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition on a call's arguments. `Err` says why it
    /// could not be decided (the policy then asks for approval).
    pub fn evaluate(&self, arguments: &Value) -> Result<bool, String> {
        match eval(&self.expr, arguments)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("`{}` is {other}, not true or false", self.source)),
        }
    }
}

fn eval(expr: &Expr, args: &Value) -> Result<Value, String> {
    Ok(match expr {
        Expr::Or(a, b) => Value::Bool(truth(a, args)? || truth(b, args)?),
        Expr::And(a, b) => Value::Bool(truth(a, args)? && truth(b, args)?),
        Expr::Not(a) => Value::Bool(!truth(a, args)?),
        Expr::Literal(v) => v.clone(),
        Expr::List(items) => Value::Array(
            items
                .iter()
                .map(|i| eval(i, args))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Path(steps) => {
            let mut current = args;
            for step in steps {
                let next = match step {
                    Step::Field(name) => current.get(name),
                    Step::Index(i) => current.get(i),
                };
                match next {
                    Some(v) => current = v,
                    None => return Ok(Value::Null),
                }
            }
            current.clone()
        }
        Expr::Call(function, argument) => {
            let value = eval(argument, args)?;
            match function {
                Function::Exists => Value::Bool(!value.is_null()),
                Function::Len => match &value {
                    Value::String(s) => Value::from(s.chars().count()),
                    Value::Array(a) => Value::from(a.len()),
                    Value::Object(o) => Value::from(o.len()),
                    Value::Null => Value::from(0),
                    other => return Err(format!("len() of {other}")),
                },
                Function::Domain => match &value {
                    Value::String(s) => Value::String(
                        s.rsplit_once('@')
                            .map(|(_, d)| d)
                            .unwrap_or_default()
                            .trim_end_matches('>')
                            .to_ascii_lowercase(),
                    ),
                    Value::Null => Value::Null,
                    other => return Err(format!("domain() of {other}")),
                },
                Function::Lower => match &value {
                    Value::String(s) => Value::String(s.to_lowercase()),
                    Value::Null => Value::Null,
                    other => return Err(format!("lower() of {other}")),
                },
            }
        }
        Expr::Compare(a, op, b) => {
            let (a, b) = (eval(a, args)?, eval(b, args)?);
            Value::Bool(compare(&a, *op, &b)?)
        }
    })
}

fn truth(expr: &Expr, args: &Value) -> Result<bool, String> {
    match eval(expr, args)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("{other} is not true or false")),
    }
}

fn compare(a: &Value, op: Op, b: &Value) -> Result<bool, String> {
    let order = || -> Result<std::cmp::Ordering, String> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x.partial_cmp(&y)
                    .ok_or_else(|| format!("cannot order {x} and {y}"))
            }
            (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
            _ => Err(format!("cannot order {a} and {b}")),
        }
    };
    let equal = |x: &Value, y: &Value| match (x, y) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => x == y,
    };
    Ok(match op {
        Op::Eq => equal(a, b),
        Op::Ne => !equal(a, b),
        Op::Gt => order()?.is_gt(),
        Op::Ge => order()?.is_ge(),
        Op::Lt => order()?.is_lt(),
        Op::Le => order()?.is_le(),
        Op::In | Op::NotIn => {
            let Value::Array(items) = b else {
                return Err(format!("`in` needs a list on its right, not {b}"));
            };
            let found = items.iter().any(|i| equal(a, i));
            if op == Op::In { found } else { !found }
        }
        Op::Contains => match (a, b) {
            (Value::String(s), Value::String(part)) => s.contains(part.as_str()),
            (Value::Array(items), item) => items.iter().any(|i| equal(i, item)),
            (Value::Null, _) => false,
            _ => return Err(format!("`contains` needs a string or list, not {a}")),
        },
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Name,
    Str(String),
    Num(f64),
    Sym,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    offset: usize,
}

fn lex(source: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = source.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let error = |message: String| ParseError { offset, message };
        if c == '"' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&(_, c)) = chars.get(i) else {
                    return Err(error("a string is not closed (missing `\"`)".into()));
                };
                i += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(&(_, escaped)) = chars.get(i) else {
                            return Err(error("a string ends with `\\`".into()));
                        };
                        i += 1;
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    c => text.push(c),
                }
            }
            let end = chars.get(i).map_or(source.len(), |&(o, _)| o);
            tokens.push(Token {
                kind: Kind::Str(text),
                text: source[offset..end].to_string(),
                offset,
            });
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while chars
                .get(i)
                .is_some_and(|(_, d)| d.is_ascii_digit() || *d == '.' || *d == '_')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(source.len(), |&(o, _)| o);
            let text = &source[chars[start].0..end];
            let number: f64 = text
                .replace('_', "")
                .parse()
                .map_err(|_| error(format!("`{text}` is not a number")))?;
            tokens.push(Token {
                kind: Kind::Num(number),
                text: text.to_string(),
                offset,
            });
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|(_, d)| d.is_alphanumeric() || *d == '_')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(source.len(), |&(o, _)| o);
            tokens.push(Token {
                kind: Kind::Name,
                text: source[chars[start].0..end].to_string(),
                offset,
            });
        } else {
            let two: String = chars[i..].iter().take(2).map(|(_, c)| c).collect();
            let symbol = if ["==", "!=", ">=", "<="].contains(&two.as_str()) {
                two
            } else if "><()[],.".contains(c) {
                c.to_string()
            } else if c == '=' {
                return Err(error(
                    "`=` is not an operator; write `==` to compare".into(),
                ));
            } else {
                return Err(error(format!("unexpected character `{c}`")));
            };
            i += symbol.chars().count();
            tokens.push(Token {
                kind: Kind::Sym,
                text: symbol,
                offset,
            });
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn is(&self, text: &str) -> bool {
        // A quoted string never counts as a keyword or symbol.
        self.peek()
            .is_some_and(|t| !matches!(t.kind, Kind::Str(_)) && t.text == text)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.peek().map_or(self.end, |t| t.offset),
            message: message.into(),
        }
    }

    fn expect(&mut self, text: &str) -> Result<(), ParseError> {
        if self.is(text) {
            self.position += 1;
            Ok(())
        } else {
            let found = self
                .peek()
                .map_or("the end".to_string(), |t| format!("`{}`", t.text));
            Err(self.error_here(format!("expected `{text}`, found {found}")))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.is("or") {
            self.position += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.is("and") {
            self.position += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is("not") {
            self.position += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        let op = match self.peek().map(|t| t.text.as_str()) {
            Some("==") => Op::Eq,
            Some("!=") => Op::Ne,
            Some(">") => Op::Gt,
            Some(">=") => Op::Ge,
            Some("<") => Op::Lt,
            Some("<=") => Op::Le,
            Some("in") => Op::In,
            Some("contains") => Op::Contains,
            Some("not")
                if self
                    .tokens
                    .get(self.position + 1)
                    .is_some_and(|t| t.text == "in") =>
            {
                self.position += 1;
                Op::NotIn
            }
            _ => return Ok(left),
        };
        self.position += 1;
        let right = self.operand()?;
        Ok(Expr::Compare(Box::new(left), op, Box::new(right)))
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.next() else {
            self.position -= 1;
            return Err(self.error_here("the condition ends where a value was expected"));
        };
        match token.kind {
            Kind::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Kind::Num(n) => Ok(Expr::Literal(
                serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
            )),
            Kind::Sym if token.text == "(" => {
                let inner = self.expr()?;
                self.expect(")")?;
                Ok(inner)
            }
            Kind::Sym if token.text == "[" => {
                let mut items = Vec::new();
                if !self.is("]") {
                    loop {
                        items.push(self.operand()?);
                        if self.is(",") {
                            self.position += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect("]")?;
                Ok(Expr::List(items))
            }
            Kind::Sym => Err(ParseError {
                offset: token.offset,
                message: format!("expected a value, found `{}`", token.text),
            }),
            Kind::Name => {
                let function = match token.text.as_str() {
                    "true" => return Ok(Expr::Literal(Value::Bool(true))),
                    "false" => return Ok(Expr::Literal(Value::Bool(false))),
                    "null" => return Ok(Expr::Literal(Value::Null)),
                    "and" | "or" | "not" | "in" | "contains" => {
                        return Err(ParseError {
                            offset: token.offset,
                            message: format!(
                                "expected a value, found the keyword `{}`",
                                token.text
                            ),
                        });
                    }
                    "exists" => Some(Function::Exists),
                    "len" => Some(Function::Len),
                    "domain" => Some(Function::Domain),
                    "lower" => Some(Function::Lower),
                    _ => None,
                };
                if let Some(function) = function
                    && self.is("(")
                {
                    self.position += 1;
                    let argument = self.operand()?;
                    self.expect(")")?;
                    return Ok(Expr::Call(function, Box::new(argument)));
                }
                let mut steps = vec![Step::Field(token.text)];
                loop {
                    if self.is(".") {
                        self.position += 1;
                        match self.next() {
                            Some(Token {
                                kind: Kind::Name,
                                text,
                                ..
                            }) => steps.push(Step::Field(text)),
                            _ => {
                                self.position -= 1;
                                return Err(self.error_here("expected a field name after `.`"));
                            }
                        }
                    } else if self.is("[") {
                        self.position += 1;
                        match self.next() {
                            Some(Token {
                                kind: Kind::Num(n), ..
                            }) if n >= 0.0 && n.fract() == 0.0 => {
                                steps.push(Step::Index(n as usize))
                            }
                            _ => {
                                self.position -= 1;
                                return Err(
                                    self.error_here("expected a list index (0, 1, …) in `[ ]`")
                                );
                            }
                        }
                        self.expect("]")?;
                    } else {
                        break;
                    }
                }
                Ok(Expr::Path(steps))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(condition: &str, args: Value) -> Result<bool, String> {
        Condition::parse(condition)
            .map_err(|e| e.to_string())?
            .evaluate(&args)
    }

    #[test]
    fn comparisons_membership_presence_and_logic() {
        let args = json!({"amount": 150, "currency": "EUR", "to": "Bob <bob@Evil.example>",
                          "lines": [{"total": 5}], "cc": ["a@x.com"]});
        let cases = [
            ("amount > 100", true),
            ("amount > 100 and currency != \"USD\"", true),
            ("amount <= 100 or currency == \"USD\"", false),
            ("not (amount > 100)", false),
            (
                "domain(to) not in [\"example.com\", \"corp.example\"]",
                true,
            ),
            ("domain(to) in [\"evil.example\"]", true),
            ("exists(memo)", false),
            ("not exists(memo)", true),
            ("lines[0].total == 5", true),
            ("lines[3].total == 5", false),
            ("len(cc) >= 1", true),
            ("cc contains \"a@x.com\"", true),
            ("lower(currency) == \"eur\"", true),
            ("amount == 150.0", true),
        ];
        for (condition, expected) in cases {
            assert_eq!(check(condition, args.clone()), Ok(expected), "{condition}");
        }
    }

    #[test]
    fn type_errors_are_errors_not_false() {
        assert!(check("currency > 100", json!({"currency": "EUR"})).is_err());
        assert!(check("amount", json!({"amount": 1})).is_err());
        // A missing field is null: ordering it is an error (fail-closed upstream).
        assert!(check("amount > 100", json!({})).is_err());
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let e = Condition::parse("amount = 100").unwrap_err();
        assert_eq!(e.offset, 7);
        assert!(e.message.contains("=="), "{e}");
        let e = Condition::parse("amount > ").unwrap_err();
        assert_eq!(e.offset, 9);
        let e = Condition::parse("(amount > 1").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{e}");
        let e = Condition::parse("currency == \"EUR").unwrap_err();
        assert_eq!(e.offset, 12);
        let e = Condition::parse("amount > 1 amount").unwrap_err();
        assert_eq!(e.offset, 11);
        assert!(
            Condition::parse("a $ b")
                .unwrap_err()
                .message
                .contains("`$`")
        );
    }

    /// The fuzz corpus (`fuzz/corpus/condition`) runs on every test run, so
    /// inputs the fuzzer found stay fixed without a nightly toolchain.
    #[test]
    fn the_fuzz_corpus_never_panics() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/condition");
        let mut seen = 0;
        for entry in std::fs::read_dir(&corpus).expect("the fuzz corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            let (condition, arguments) = text.split_once('\n').unwrap_or((text, "{}"));
            if let Ok(condition) = Condition::parse(condition) {
                let arguments = serde_json::from_str(arguments).unwrap_or(Value::Null);
                let _ = condition.evaluate(&arguments);
            }
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} corpus files");
    }
}
