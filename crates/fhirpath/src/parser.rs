//! A recursive-descent parser from tokens to [`Expr`], following the FHIRPath operator precedence
//! (lowest first: `implies`; `or`/`xor`; `and`; `in`/`contains`; equality; comparison; `|`;
//! `is`/`as`; additive; multiplicative; unary; invocation and indexer).

use crate::ast::{BinOp, EnvVar, Expr, Literal, TypeOp, TypeSpec};
use crate::functions::Func;
use crate::lexer::{tokenize, Tok, Token};
use crate::ParseError;

/// Nesting limit, so that hostile input cannot overflow the stack: neither the parser's recursion nor
/// the evaluator's (nor dropping the tree), which follow the depth of the tree. Every node that wraps
/// another (a parenthesis, an operator, a `.step`, an indexer, a negation) counts.
const MAX_DEPTH: usize = 64;

pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let expr = p.expression()?;
    match &p.peek().tok {
        Tok::Eof => Ok(expr),
        other => Err(p.error(format!("unexpected {}", describe(other)))),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) | Tok::Delimited(s) => format!("identifier '{s}'"),
        Tok::Str(_) => "string".into(),
        Tok::Number(n) => format!("number {n}"),
        Tok::DateTime(d) => format!("date/time @{d}"),
        Tok::Env(v) => format!("variable %{v}"),
        Tok::Special(v) => format!("${v}"),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::Eof => "end of expression".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `at` never moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.at + n).min(self.tokens.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn error(&self, message: String) -> ParseError {
        ParseError {
            position: self.peek().pos,
            message,
        }
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(&self.peek().tok, Tok::Punct(q) if *q == p)
    }

    fn is_keyword(&self, k: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == k)
    }

    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.is_punct(p) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(format!(
                "expected '{p}', found {}",
                describe(&self.peek().tok)
            )))
        }
    }

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("expression nested too deeply".into()));
        }
        let e = self.binary(0);
        self.depth -= 1;
        e
    }

    /// The operator at the cursor if it belongs to precedence `level` (0 = loosest).
    fn operator(&self, level: usize) -> Option<BinOp> {
        let tok = &self.peek().tok;
        let op = match (level, tok) {
            (0, Tok::Ident(s)) if s == "implies" => BinOp::Implies,
            (1, Tok::Ident(s)) if s == "or" => BinOp::Or,
            (1, Tok::Ident(s)) if s == "xor" => BinOp::Xor,
            (2, Tok::Ident(s)) if s == "and" => BinOp::And,
            (3, Tok::Ident(s)) if s == "in" => BinOp::In,
            (3, Tok::Ident(s)) if s == "contains" => BinOp::Contains,
            (4, Tok::Punct("=")) => BinOp::Eq,
            (4, Tok::Punct("!=")) => BinOp::Ne,
            (4, Tok::Punct("~")) => BinOp::Equiv,
            (4, Tok::Punct("!~")) => BinOp::NotEquiv,
            (5, Tok::Punct("<")) => BinOp::Lt,
            (5, Tok::Punct(">")) => BinOp::Gt,
            (5, Tok::Punct("<=")) => BinOp::Le,
            (5, Tok::Punct(">=")) => BinOp::Ge,
            (6, Tok::Punct("|")) => BinOp::Union,
            (8, Tok::Punct("+")) => BinOp::Add,
            (8, Tok::Punct("-")) => BinOp::Sub,
            (8, Tok::Punct("&")) => BinOp::Concat,
            (9, Tok::Punct("*")) => BinOp::Mul,
            (9, Tok::Punct("/")) => BinOp::Div,
            (9, Tok::Ident(s)) if s == "div" => BinOp::IntDiv,
            (9, Tok::Ident(s)) if s == "mod" => BinOp::Mod,
            _ => return None,
        };
        Some(op)
    }

    fn binary(&mut self, level: usize) -> Result<Expr, ParseError> {
        if level == 7 {
            return self.type_expression();
        }
        if level == 10 {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        let outer = self.depth;
        while let Some(op) = self.operator(level) {
            self.bump();
            self.deeper()?;
            let rhs = self.binary(level + 1)?;
            lhs = Expr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        self.depth = outer;
        Ok(lhs)
    }

    /// One more level of nesting, or an error past [`MAX_DEPTH`].
    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("expression nested too deeply".into()));
        }
        Ok(())
    }

    fn type_expression(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.binary(8)?;
        let outer = self.depth;
        loop {
            let op = if self.is_keyword("is") {
                TypeOp::Is
            } else if self.is_keyword("as") {
                TypeOp::As
            } else {
                self.depth = outer;
                return Ok(e);
            };
            self.bump();
            self.deeper()?;
            let ty = self.type_spec()?;
            e = Expr::Type {
                op,
                base: Some(Box::new(e)),
                ty,
            };
        }
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = self.identifier()?;
        if self.is_punct(".") && matches!(self.peek_at(1), Tok::Ident(_) | Tok::Delimited(_)) {
            self.bump();
            let name = self.identifier()?;
            return Ok(TypeSpec {
                namespace: Some(first),
                name,
            });
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        match self.peek().tok.clone() {
            Tok::Ident(s) | Tok::Delimited(s) => {
                self.bump();
                Ok(s)
            }
            other => Err(self.error(format!(
                "expected an identifier, found {}",
                describe(&other)
            ))),
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.is_punct("-") || self.is_punct("+") {
            let negate = self.is_punct("-");
            self.bump();
            self.deeper()?;
            let inner = self.unary();
            self.depth -= 1;
            let inner = inner?;
            return Ok(match (negate, inner) {
                (false, e) => e,
                (true, Expr::Literal(Literal::Integer(i))) => Expr::Literal(Literal::Integer(-i)),
                (true, Expr::Literal(Literal::Decimal(d))) => Expr::Literal(Literal::Decimal(-d)),
                (true, e) => Expr::Negate(Box::new(e)),
            });
        }
        let mut e = self.term()?;
        let outer = self.depth;
        loop {
            if self.is_punct(".") {
                self.bump();
                self.deeper()?;
                e = self.invocation(Some(Box::new(e)))?;
            } else if self.is_punct("[") {
                self.bump();
                self.deeper()?;
                let index = self.expression()?;
                self.expect("]")?;
                e = Expr::Indexer {
                    base: Box::new(e),
                    index: Box::new(index),
                };
            } else {
                self.depth = outer;
                return Ok(e);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let tok = self.peek().clone();
        match tok.tok {
            Tok::Number(n) => {
                self.bump();
                let value = if n.contains('.') {
                    n.parse::<f64>().map(Literal::Decimal).ok()
                } else {
                    n.parse::<i64>().map(Literal::Integer).ok()
                };
                let Some(value) = value else {
                    return Err(ParseError {
                        position: tok.pos,
                        message: format!("number {n} out of range"),
                    });
                };
                self.quantity_unit(value, tok.pos)
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Literal(Literal::String(s)))
            }
            Tok::DateTime(d) => {
                self.bump();
                Ok(Expr::Literal(if let Some(t) = d.strip_prefix('T') {
                    Literal::Time(t.to_string())
                } else if d.contains('T') {
                    Literal::DateTime(d)
                } else {
                    Literal::Date(d)
                }))
            }
            Tok::Env(name) => {
                self.bump();
                let var = match name.as_str() {
                    "resource" | "rootResource" => EnvVar::Resource,
                    "context" => EnvVar::Context,
                    "ucum" => EnvVar::Constant("http://unitsofmeasure.org".into()),
                    "sct" => EnvVar::Constant("http://snomed.info/sct".into()),
                    "loinc" => EnvVar::Constant("http://loinc.org".into()),
                    n => match (n.strip_prefix("vs-"), n.strip_prefix("ext-")) {
                        (Some(vs), _) => {
                            EnvVar::Constant(format!("http://hl7.org/fhir/ValueSet/{vs}"))
                        }
                        (_, Some(ext)) => EnvVar::Constant(format!(
                            "http://hl7.org/fhir/StructureDefinition/{ext}"
                        )),
                        _ => {
                            return Err(ParseError {
                                position: tok.pos,
                                message: format!("unknown variable %{name}"),
                            })
                        }
                    },
                };
                Ok(Expr::Env(var))
            }
            Tok::Special(name) => {
                self.bump();
                match name.as_str() {
                    "this" => Ok(Expr::This),
                    "index" => Ok(Expr::Index),
                    "total" => Ok(Expr::Total),
                    _ => Err(ParseError {
                        position: tok.pos,
                        message: format!("unknown variable ${name}"),
                    }),
                }
            }
            Tok::Punct("(") => {
                self.bump();
                let e = self.expression()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                self.bump();
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Ident(ref s) if s == "true" || s == "false" => {
                self.bump();
                Ok(Expr::Literal(Literal::Boolean(s == "true")))
            }
            Tok::Ident(_) | Tok::Delimited(_) => self.invocation(None),
            other => Err(self.error(format!("unexpected {}", describe(&other)))),
        }
    }

    /// A number optionally followed by a unit: `4 'mg'`, `3 days`.
    fn quantity_unit(&mut self, value: Literal, _pos: usize) -> Result<Expr, ParseError> {
        let number = match value {
            Literal::Integer(i) => i as f64,
            Literal::Decimal(d) => d,
            _ => return Ok(Expr::Literal(value)),
        };
        let unit = match &self.peek().tok {
            Tok::Str(u) => u.clone(),
            Tok::Ident(w) if calendar_unit(w).is_some() => {
                calendar_unit(w).unwrap_or_default().to_string()
            }
            _ => return Ok(Expr::Literal(value)),
        };
        self.bump();
        Ok(Expr::Literal(Literal::Quantity {
            value: number,
            unit,
        }))
    }

    /// `name` or `name(args)`, applied to `base`.
    fn invocation(&mut self, base: Option<Box<Expr>>) -> Result<Expr, ParseError> {
        let pos = self.peek().pos;
        let name = self.identifier()?;
        if !self.is_punct("(") {
            return Ok(Expr::Member { base, name });
        }
        self.bump();
        if let Some(op) = match name.as_str() {
            "is" => Some(TypeOp::Is),
            "as" => Some(TypeOp::As),
            "ofType" => Some(TypeOp::OfType),
            _ => None,
        } {
            let ty = self.type_spec()?;
            self.expect(")")?;
            return Ok(Expr::Type { op, base, ty });
        }
        let Some(func) = Func::from_name(&name) else {
            return Err(ParseError {
                position: pos,
                message: format!("unknown function '{name}'"),
            });
        };
        let mut args = Vec::new();
        if !self.is_punct(")") {
            loop {
                args.push(self.expression()?);
                if self.is_punct(",") {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(ParseError {
                position: pos,
                message: format!(
                    "{name}() takes {expected} argument(s), {} given",
                    args.len()
                ),
            });
        }
        // A literal regular expression is compiled once, here.
        let regex = match args.first() {
            Some(Expr::Literal(Literal::String(pattern))) if func.takes_regex() => {
                match crate::functions::compile_regex(func, pattern) {
                    Ok(r) => Some(Box::new(r)),
                    Err(e) => {
                        return Err(ParseError {
                            position: pos,
                            message: e.0,
                        })
                    }
                }
            }
            _ => None,
        };
        Ok(Expr::Call {
            base,
            func,
            args,
            regex,
        })
    }
}

/// The calendar duration keywords of FHIRPath quantities, by their singular form.
pub(crate) fn calendar_unit(word: &str) -> Option<&'static str> {
    Some(match word {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "week",
        "day" | "days" => "day",
        "hour" | "hours" => "hour",
        "minute" | "minutes" => "minute",
        "second" | "seconds" => "second",
        "millisecond" | "milliseconds" => "millisecond",
        _ => return None,
    })
}
