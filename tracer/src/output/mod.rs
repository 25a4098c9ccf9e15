//! Image output: the minimal image, written as an OCI layout or a docker archive.
