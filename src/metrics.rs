//! Detection metrics from scores, not hard labels: accuracy (at 0.5), ROC AUC (ties get half
//! credit), EER, average precision (scikit-learn's step-wise definition) and log loss.
//! Metrics that need both classes are `None` when one is missing, never a made-up 0.5.

/// Metrics of one set of (label, fake probability) pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub n: usize,
    pub real: usize,
    pub fake: usize,
    pub accuracy: f64,
    pub auc: Option<f64>,
    pub eer: Option<f64>,
    pub ap: Option<f64>,
    pub log_loss: f64,
}

/// ROC AUC: the probability that a random fake scores above a random real (ties count half).
pub fn auc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l == 1).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Average ranks of tied scores (Mann-Whitney U).
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let rank_sum: f64 = labels.iter().zip(&ranks).filter(|(l, _)| **l == 1).map(|(_, r)| r).sum();
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// ROC points (fpr, tpr) at every distinct threshold, from (0,0) to (1,1).
pub fn roc(labels: &[u8], scores: &[f64]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|l| **l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] == 1 { tp += 1.0 } else { fp += 1.0 }
            i += 1;
        }
        pts.push((if neg > 0.0 { fp / neg } else { 0.0 }, if pos > 0.0 { tp / pos } else { 0.0 }));
    }
    pts
}

/// Equal error rate: where the false positive rate equals the false negative rate on the ROC
/// curve (linear interpolation between its points).
pub fn eer(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l == 1).count();
    if pos == 0 || pos == labels.len() {
        return None;
    }
    let pts = roc(labels, scores);
    for w in pts.windows(2) {
        let (f0, t0) = w[0];
        let (f1, t1) = w[1];
        let (d0, d1) = (f0 - (1.0 - t0), f1 - (1.0 - t1));
        if d0 <= 0.0 && d1 >= 0.0 {
            let a = if d1 - d0 == 0.0 { 0.0 } else { -d0 / (d1 - d0) };
            return Some(f0 + a * (f1 - f0));
        }
    }
    None
}

/// Average precision: Σ (R_n - R_{n-1}) P_n over distinct thresholds, high to low.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l == 1).count() as f64;
    if pos == 0.0 || pos as usize == labels.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut tp, mut seen, mut prev_recall, mut ap) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] == 1 {
                tp += 1.0;
            }
            seen += 1.0;
            i += 1;
        }
        let recall = tp / pos;
        ap += (recall - prev_recall) * (tp / seen);
        prev_recall = recall;
    }
    Some(ap)
}

/// Mean binary cross-entropy, probabilities clipped to [1e-15, 1 - 1e-15].
pub fn log_loss(labels: &[u8], probs: &[f64]) -> f64 {
    let n = labels.len().max(1) as f64;
    labels
        .iter()
        .zip(probs)
        .map(|(l, p)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *l == 1 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n
}

/// All metrics of (label, probability) pairs.
pub fn compute(labels: &[u8], probs: &[f64]) -> Metrics {
    let fake = labels.iter().filter(|l| **l == 1).count();
    let right = labels.iter().zip(probs).filter(|(l, p)| (**p >= 0.5) == (**l == 1)).count();
    Metrics {
        n: labels.len(),
        real: labels.len() - fake,
        fake,
        accuracy: if labels.is_empty() { 0.0 } else { right as f64 / labels.len() as f64 },
        auc: auc(labels, probs),
        eer: eer(labels, probs),
        ap: average_precision(labels, probs),
        log_loss: log_loss(labels, probs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("defined");
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    // Values from scikit-learn 1.x: roc_auc_score, average_precision_score, log_loss.
    #[test]
    fn auc_with_ties_matches_scikit_learn() {
        let y = [0, 0, 1, 1];
        let s = [0.1, 0.4, 0.35, 0.8];
        close(auc(&y, &s), 0.75);
        // A tie between a fake and a real counts half: 3.5 of 4 pairs.
        let y = [0, 1, 0, 1];
        let s = [0.5, 0.5, 0.2, 0.9];
        close(auc(&y, &s), 0.875);
        let y = [0, 0, 1, 1];
        let s = [0.5, 0.5, 0.5, 0.5];
        close(auc(&y, &s), 0.5);
    }

    #[test]
    fn average_precision_matches_scikit_learn() {
        close(average_precision(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]), 0.8333333333333333);
        // With a tie at the top: sklearn 0.5833333333333333.
        close(average_precision(&[1, 0, 0, 1], &[0.9, 0.9, 0.1, 0.2]), 0.5833333333333333);
    }

    #[test]
    fn eer_of_separable_and_inverted_scores() {
        close(eer(&[0, 0, 1, 1], &[0.1, 0.2, 0.8, 0.9]), 0.0);
        close(eer(&[0, 0, 1, 1], &[0.9, 0.8, 0.2, 0.1]), 1.0);
        close(eer(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]), 0.5);
    }

    #[test]
    fn log_loss_and_one_class_sets() {
        let ll = log_loss(&[0, 1], &[0.2, 0.7]);
        assert!((ll - 0.2899092476264711).abs() < 1e-12, "{ll}");
        let m = compute(&[1, 1, 1], &[0.9, 0.2, 0.6]);
        assert_eq!(m.auc, None);
        assert_eq!(m.eer, None);
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
    }
}
