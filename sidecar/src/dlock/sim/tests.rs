//! The CI batch (placeholder, sized after measuring).
