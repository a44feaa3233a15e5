//! The trainer (libtorch through `tch`): data, models, losses, loops, checkpoints.

pub mod checkpoint;
