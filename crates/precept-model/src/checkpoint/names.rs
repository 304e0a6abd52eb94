//! Checkpoint key of the parameter being visited, tracked from burn's module traversal.

/// The stack of (field name, container type) entered so far while walking a module.
#[derive(Debug, Default)]
pub(crate) struct TensorPath {
    stack: Vec<(String, String)>,
}

impl TensorPath {
    /// Called from `enter_module`.
    pub fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_owned(), container.to_owned()));
    }

    /// Called from `exit_module`.
    pub fn exit(&mut self) {
        self.stack.pop();
    }

    /// The checkpoint key, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub fn key(&self) -> String {
        let names: Vec<&str> = self.stack.iter().map(|(name, _)| name.as_str()).collect();
        names.join(".")
    }

    /// Whether the current parameter is a `Linear` weight, stored transposed relative to checkpoints.
    pub fn is_linear_weight(&self) -> bool {
        matches!(self.stack.last(), Some((name, container)) if name == "weight" && container == "Struct:Linear")
    }
}
