//! PHP-style flattened form fields (`users[0][username]=…`). Moodle reads them through PHP's
//! `$_POST`, which drops fields past `max_input_vars`, so callers size batches by field count.

#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Form::default()
    }

    pub fn field(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.fields.push((key.into(), value.to_string()));
        self
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl ToString) {
        self.fields.push((key.into(), value.to_string()));
    }

    /// Append every field of `item` under `prefix[index]`.
    pub fn item(&mut self, prefix: &str, index: usize, item: &[(&str, String)]) {
        for (k, v) in item {
            self.fields.push((format!("{prefix}[{index}][{k}]"), v.clone()));
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_like_php() {
        let mut f = Form::new().field("criteria[0][key]", "idnumber");
        f.item("users", 1, &[("username", "léa".into()), ("auth", "manual".into())]);
        let keys: Vec<&str> = f.fields().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["criteria[0][key]", "users[1][username]", "users[1][auth]"]);
        assert_eq!(f.len(), 3);
    }
}
