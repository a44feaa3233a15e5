//! The trainer (libtorch through `tch`), split the way people think about it:
//! [`data`] (manifest rows -> augmented batches) and [`augment`], [`model`] (backbone, head,
//! classifier; [`resnet`], [`efficientnet`]), [`loss`] (SupCon, CE, MPL), [`optim`] (Adam with savable state),
//! [`teacher`] (the training stages), [`checkpoint`], [`config`] (recipes), and
//! [`fixture`] (a small real-face training set for tests and the demo).

pub mod augment;
pub mod baseline;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod efficientnet;
pub mod fixture;
pub mod loss;
pub mod model;
pub mod mpl;
pub mod eval;
pub mod optim;
pub mod resnet;
pub mod teacher;
