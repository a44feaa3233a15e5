//! Adam, owned here so that its moments can be saved and a run resumed exactly (tch's
//! built-in optimisers keep their state inside libtorch, out of reach).
//! Same update as `torch.optim.Adam` (no weight decay, no amsgrad).

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, TchError, Tensor};

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub step: i64,
    /// Trainable variables by name, with their first and second moments.
    params: BTreeMap<String, (Tensor, Tensor, Tensor)>,
}

impl Adam {
    /// Adam over the trainable variables of `vs` (BatchNorm running statistics are not trainable).
    pub fn new(vs: &nn::VarStore, lr: f64) -> Adam {
        let trainable: Vec<Tensor> = vs.trainable_variables();
        let params = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad() && trainable.iter().any(|tv| tv.data_ptr() == t.data_ptr()))
            .map(|(name, t)| {
                let m = t.zeros_like();
                let v = t.zeros_like();
                (name, (t, m, v))
            })
            .collect();
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, params }
    }

    pub fn zero_grad(&mut self) {
        for (p, _, _) in self.params.values_mut() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update from the gradients currently stored on the parameters.
    pub fn step(&mut self) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (p, m, v) in self.params.values_mut() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.g_mul_scalar_(self.beta1).g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2).g_add_(&(&g * &g * (1.0 - self.beta2)));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m / denom * (self.lr / bc1)));
            }
        });
    }

    /// zero_grad, backward, step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// Saves the moments and the step count (safetensors).
    pub fn save(&self, path: &Path) -> Result<(), TchError> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (name, (_, m, v)) in &self.params {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        named.push(("step".into(), Tensor::from_slice(&[self.step])));
        Tensor::write_safetensors(&named, path)
    }

    /// Restores what [`Adam::save`] wrote; the parameter names must match.
    pub fn load(&mut self, path: &Path) -> Result<(), TchError> {
        let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let step = saved.get("step").ok_or_else(|| TchError::FileFormat(format!("{}: no step", path.display())))?;
        self.step = step.int64_value(&[0]);
        tch::no_grad(|| -> Result<(), TchError> {
            for (name, (_, m, v)) in self.params.iter_mut() {
                for (prefix, dst) in [("m", m), ("v", v)] {
                    let src = saved.get(&format!("{prefix}.{name}")).ok_or_else(|| {
                        TchError::FileFormat(format!("{}: no optimizer state for {name}", path.display()))
                    })?;
                    dst.f_copy_(src)?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn matches_the_adam_formula_over_three_steps() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, 0.1);
        let (mut m, mut v, mut x) = ([0.0f64; 2], [0.0f64; 2], [1.0f64; 2]);
        for t in 1..=3 {
            // loss = sum(w^2 * [1, 3]) -> grad = 2 w [1, 3]
            let loss = (&w * &w * Tensor::from_slice(&[1.0f32, 3.0])).sum(Kind::Float);
            opt.backward_step(&loss);
            for i in 0..2 {
                let g = 2.0 * x[i] * [1.0, 3.0][i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                x[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
            }
        }
        for i in 0..2 {
            assert!((w.double_value(&[i as i64]) - x[i]).abs() < 1e-5);
        }
    }
}
