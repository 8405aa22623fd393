//! The error of the CRI-to-OCI translation. Every message names the CRI field (or the
//! image config field) it is about, so the server can hand it back as `InvalidArgument`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A request or image field that cannot be honoured.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A file that the request points at could not be read.
    #[error("{field}: cannot read {path}: {source}")]
    Read {
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A field this node cannot honour for a reason of its own (a profile it lacks).
    #[error("{field}: {reason}")]
    NodeLacks { field: String, reason: String },
    /// The OCI types refused a value; a defect of this module, not of the request.
    #[error("building the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Whether the request (or its image) is at fault, as opposed to this node or this
    /// module.
    pub fn is_invalid_argument(&self) -> bool {
        !matches!(self, SpecError::Build(_) | SpecError::NodeLacks { .. })
    }
}

impl From<criox_formats::cri_fields::FieldError> for SpecError {
    fn from(e: criox_formats::cri_fields::FieldError) -> Self {
        SpecError::Invalid {
            field: e.field,
            reason: e.message,
        }
    }
}

pub type Result<T> = std::result::Result<T, SpecError>;
