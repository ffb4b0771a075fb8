//! Global functions every script has without a prefix: assertions used by recipes and by
//! the executed examples in every function's documentation.
pub mod rhai;
