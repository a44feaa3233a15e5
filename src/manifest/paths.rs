//! Path rules of the manifests: every path column is relative to the manifest's own folder and
//! stays inside it, so a manifest and its images can be moved and validated as a whole.

use std::path::{Component, Path};

use super::ManifestError;

/// File extensions taken as images (index, predict).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "webp"];

/// Whether `path` names an image by its extension.
pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// `target` relative to the folder `base` (both made absolute first), with `/` separators.
pub fn relative_path(target: &Path, base: &Path) -> String {
    let abs = |p: &Path| {
        let p = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(p) };
        p.canonicalize().unwrap_or(p)
    };
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<Component> = t.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); bc.len() - common];
    parts.extend(tc[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    parts.join("/")
}

/// A path column must stay inside the manifest's folder: relative, no `..` escaping it.
pub fn path_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    if p.is_absolute() {
        return false;
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// `target` relative to the folder `base`, refused when it would leave `base` (manifests only
/// point inside their own folder).
pub fn rebase(target: &Path, base: &Path) -> Result<String, ManifestError> {
    let rel = relative_path(target, base);
    if path_inside(&rel) {
        Ok(rel)
    } else {
        Err(ManifestError::Outside { target: target.to_path_buf(), base: base.to_path_buf() })
    }
}

/// The folder of a manifest file, `.` for a bare file name.
pub fn folder_of(manifest: &Path) -> &Path {
    manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/v.mp4"), b"").unwrap();
        assert_eq!(relative_path(&dir.path().join("c/v.mp4"), &dir.path().join("a/b")), "../../c/v.mp4");
        assert_eq!(relative_path(&dir.path().join("c/v.mp4"), dir.path()), "c/v.mp4");
    }

    #[test]
    fn paths_must_stay_inside_the_root() {
        assert!(path_inside("faces/a/1.png"));
        assert!(path_inside("a/../b.png"));
        assert!(!path_inside("../x.png"));
        assert!(!path_inside("a/../../x.png"));
        assert!(!path_inside("/etc/passwd"));
    }
}
