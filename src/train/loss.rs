//! Losses: supervised contrastive (Khosla et al. 2020, L_out), cross-entropy, and the MPL
//! teacher loss.
//!
//! ```
//! use tch::{Kind, Tensor};
//! // Two anchors of one class, one view each: identical features, so every positive is
//! // the only other sample and the loss is log(1) = 0.
//! let z = Tensor::from_slice(&[1.0f64, 0.0, 1.0, 0.0]).view([2, 1, 2]);
//! let y = Tensor::from_slice(&[0i64, 0]);
//! let l = scmpl::train::loss::supcon(&z, &y, 0.1, 0.07).unwrap();
//! assert!(l.double_value(&[]).abs() < 1e-9);
//! ```

use tch::{Kind, TchError, Tensor};

/// SupCon loss of `features` [B, V, D] (unit norm) with `labels` [B].
///
/// The N = V·B anchors are taken view-major; each anchor's loss is
/// `-(τ/τ_base) · mean over positives p of log(exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ))`.
/// An anchor without a positive contributes 0 but still counts in the mean over N.
pub fn supcon(features: &Tensor, labels: &Tensor, temperature: f64, base_temperature: f64) -> Result<Tensor, TchError> {
    let (per_anchor, _) = supcon_per_anchor(features, labels, temperature, base_temperature)?;
    per_anchor.f_mean(per_anchor.kind())
}

/// The per-anchor SupCon losses [N] (view-major) and N.
pub fn supcon_per_anchor(
    features: &Tensor,
    labels: &Tensor,
    temperature: f64,
    base_temperature: f64,
) -> Result<(Tensor, i64), TchError> {
    let size = features.size();
    if size.len() != 3 {
        return Err(TchError::Shape(format!("supcon: features must be [batch, views, dim], got {size:?}")));
    }
    let (b, v) = (size[0], size[1]);
    if labels.size() != [b] {
        return Err(TchError::Shape(format!("supcon: labels must be [{b}], got {:?}", labels.size())));
    }
    let n = b * v;
    let device = features.device();
    // [V·B, D], view-major: all first views, then all second views.
    let contrast = features.f_transpose(0, 1)?.f_reshape([n, -1])?;
    let logits = contrast.f_matmul(&contrast.f_tr()?)?.f_div_scalar(temperature)?;
    // Subtracting the row max changes nothing mathematically and keeps exp finite.
    let (row_max, _) = logits.f_max_dim(1, true)?;
    let logits = logits.f_sub(&row_max.detach())?;
    let labels = labels.f_repeat([v])?;
    let same = labels.f_unsqueeze(1)?.f_eq_tensor(&labels.f_unsqueeze(0)?)?.f_to_kind(logits.kind())?;
    let not_self = Tensor::f_ones([n, n], (logits.kind(), device))?.f_sub(&Tensor::f_eye(n, (logits.kind(), device))?)?;
    let positives = same.f_mul(&not_self)?;
    let exp = logits.f_exp()?.f_mul(&not_self)?;
    let log_prob = logits.f_sub(&exp.f_sum_dim_intlist(1, true, logits.kind())?.f_log()?)?;
    let pos_count = positives.f_sum_dim_intlist(1, false, logits.kind())?;
    // Anchors without positives: divide by 1 instead of 0; their sum is 0 anyway.
    let denom = pos_count.f_clamp_min(1.0)?;
    let mean_log_prob_pos = positives.f_mul(&log_prob)?.f_sum_dim_intlist(1, false, logits.kind())?.f_div(&denom)?;
    let per_anchor = mean_log_prob_pos.f_mul_scalar(-(temperature / base_temperature))?;
    Ok((per_anchor, n))
}

/// Mean cross-entropy of `logits` [B, C] against class indices `labels` [B].
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor, TchError> {
    logits.f_log_softmax(-1, logits.kind())?.f_nll_loss(labels, None::<Tensor>, tch::Reduction::Mean, -100)
}

/// The MPL teacher loss: `CE(t_l, y) + h · CE(t_us, argmax(t_us))`, where `h = s_new - s_old`
/// (the student's labelled-loss change, a constant) scales the teacher's own hard pseudo-label
/// loss on the strongly augmented unlabelled view.
pub fn mpl_teacher_loss(t_logits_l: &Tensor, labels: &Tensor, t_logits_us: &Tensor, h: f64) -> Result<Tensor, TchError> {
    let l = cross_entropy(t_logits_l, labels)?;
    let pseudo = t_logits_us.detach().f_argmax(-1, false)?;
    let u = cross_entropy(t_logits_us, &pseudo)?;
    l.f_add(&u.f_mul_scalar(h)?)
}

/// Fraction of rows whose argmax equals the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    logits.argmax(-1, false).eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64s(v: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn a_features() -> Tensor {
        f64s(&[1.0, 0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 1.0, 0.0, 0.0, 0.6, 0.8], &[4, 1, 3])
    }

    fn labels(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn close(t: &Tensor, want: f64) {
        let got = t.double_value(&[]);
        assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
    }

    #[test]
    fn supcon_matches_test_vector_a_and_its_per_anchor_values() {
        let (per, n) = supcon_per_anchor(&a_features(), &labels(&[0, 0, 1, 1]), 0.07, 0.07).unwrap();
        assert_eq!(n, 4);
        let want = [2.1760043693e-05, 5.7603918429e-02, 6.9324189699e-01, 3.2101859831e-02];
        for (i, w) in want.iter().enumerate() {
            let got = per.double_value(&[i as i64]);
            assert!((got - w).abs() < 1e-9, "anchor {i}: {got} vs {w}");
        }
        close(&supcon(&a_features(), &labels(&[0, 0, 1, 1]), 0.07, 0.07).unwrap(), 0.19574235882260355);
    }

    #[test]
    fn supcon_matches_test_vector_a_prime() {
        close(&supcon(&a_features(), &labels(&[0, 0, 1, 1]), 0.1, 0.07).unwrap(), 0.32923087700420034);
    }

    #[test]
    fn supcon_matches_test_vector_b_two_views() {
        let v0 = [1.0, 0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 1.0, 0.0, 0.0, 0.6, 0.8];
        let v1 = [0.6, 0.8, 0.0, 1.0, 0.0, 0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 1.0];
        let f = Tensor::stack(&[f64s(&v0, &[4, 3]), f64s(&v1, &[4, 3])], 1);
        assert_eq!(f.size(), [4, 2, 3]);
        close(&supcon(&f, &labels(&[0, 0, 1, 1]), 0.1, 0.07).unwrap(), 3.558652584133963);
        close(&supcon(&f, &labels(&[0, 0, 1, 1]), 0.07, 0.07).unwrap(), 3.3237421146559347);
    }

    #[test]
    fn supcon_matches_test_vector_c_with_a_lonely_anchor() {
        close(&supcon(&a_features(), &labels(&[0, 1, 1, 2]), 0.07, 0.07).unwrap(), 0.9019971681397104);
    }

    #[test]
    fn supcon_gradient_matches_finite_differences() {
        tch::manual_seed(3);
        let raw = Tensor::randn([3, 2, 4], (Kind::Double, tch::Device::Cpu));
        let y = labels(&[0, 1, 0]);
        let loss_of = |x: &Tensor| {
            let z = x / x.norm_scalaropt_dim(2.0, [2], true);
            supcon(&z, &y, 0.1, 0.07).unwrap().double_value(&[])
        };
        let x = raw.copy().set_requires_grad(true);
        let z = &x / x.norm_scalaropt_dim(2.0, [2], true);
        supcon(&z, &y, 0.1, 0.07).unwrap().backward();
        let grad = x.grad();
        let eps = 1e-6;
        for i in 0..3 {
            for v in 0..2 {
                for d in 0..4 {
                    let plus = raw.copy();
                    let _ = plus.get(i).get(v).get(d).g_add_scalar_(eps);
                    let minus = raw.copy();
                    let _ = minus.get(i).get(v).get(d).g_add_scalar_(-eps);
                    let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * eps);
                    let analytic = grad.double_value(&[i, v, d]);
                    assert!((numeric - analytic).abs() < 1e-6, "[{i},{v},{d}] {numeric} vs {analytic}");
                }
            }
        }
    }

    #[test]
    fn supcon_rejects_bad_shapes() {
        assert!(supcon(&Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu)), &labels(&[0, 0, 1, 1]), 0.1, 0.07).is_err());
        assert!(supcon(&a_features(), &labels(&[0, 1]), 0.1, 0.07).is_err());
    }

    #[test]
    fn mpl_teacher_loss_matches_the_test_vector() {
        let tl = f64s(&[2.0, -1.0, 0.5, 0.3], &[2, 2]);
        let y = labels(&[0, 1]);
        let tus = f64s(&[0.2, 1.2, -0.4, 0.1, 0.9, 0.4], &[3, 2]);
        close(&cross_entropy(&tl, &y).unwrap(), 0.4233631104776669);
        let pseudo = tus.argmax(-1, false);
        close(&cross_entropy(&tus, &pseudo).unwrap(), 0.42047188529281204);
        let h = 0.65 - 0.70;
        close(&mpl_teacher_loss(&tl, &y, &tus, h).unwrap(), 0.4023395162130263);
    }
}
