//! The two icons Teams asks for: a 192×192 colour icon and a 32×32 outline icon (pure white on a
//! fully transparent background). Drawn here from the accent colour, or read from files; either
//! way checked by decoding the PNG (signature, size, and every pixel of the outline).

use super::TeamsAppError;

pub const COLOR_SIZE: u32 = 192;
pub const OUTLINE_SIZE: u32 = 32;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Color,
    Outline,
}

impl Icon {
    pub fn file(self) -> &'static str {
        match self {
            Icon::Color => super::manifest::COLOR_ICON,
            Icon::Outline => super::manifest::OUTLINE_ICON,
        }
    }
    fn size(self) -> u32 {
        match self {
            Icon::Color => COLOR_SIZE,
            Icon::Outline => OUTLINE_SIZE,
        }
    }
}

/// Decoded pixels, always RGBA 8-bit.
struct Rgba {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 4]>,
}

fn problem(icon: Icon, text: impl Into<String>) -> TeamsAppError {
    TeamsAppError::Icon {
        file: icon.file(),
        problem: text.into(),
    }
}

fn decode(icon: Icon, bytes: &[u8]) -> Result<Rgba, TeamsAppError> {
    if !bytes.starts_with(PNG_SIGNATURE) {
        return Err(problem(icon, "not a PNG file (signature missing)"));
    }
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| problem(icon, format!("unreadable PNG ({e})")))?;
    // Bounded by the declared size: a huge header is refused before any allocation.
    let info = reader.info();
    if info.width > 4096 || info.height > 4096 {
        return Err(problem(
            icon,
            format!("is {}×{} px, far too large", info.width, info.height),
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| problem(icon, "image too large"))?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| problem(icon, format!("unreadable PNG ({e})")))?;
    let data = &buf[..frame.buffer_size()];
    let pixels: Vec<[u8; 4]> = match frame.color_type {
        png::ColorType::Rgba => data
            .chunks_exact(4)
            .map(|p| [p[0], p[1], p[2], p[3]])
            .collect(),
        png::ColorType::Rgb => data
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => data
            .chunks_exact(2)
            .map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => data.iter().map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => {
            return Err(problem(icon, "palette PNG that could not be expanded"))
        }
    };
    Ok(Rgba {
        width: frame.width,
        height: frame.height,
        pixels,
    })
}

/// Size and format of either icon; for the outline also "only opaque white on transparent".
pub fn check(icon: Icon, bytes: &[u8]) -> Result<(), TeamsAppError> {
    let img = decode(icon, bytes)?;
    let want = icon.size();
    if (img.width, img.height) != (want, want) {
        return Err(problem(
            icon,
            format!(
                "is {}×{} px, Teams wants {want}×{want}",
                img.width, img.height
            ),
        ));
    }
    if icon == Icon::Outline {
        if let Some(n) = img
            .pixels
            .iter()
            .position(|p| !(p[3] == 0 || *p == [255, 255, 255, 255]))
        {
            let (x, y) = (n as u32 % img.width, n as u32 / img.width);
            let p = img.pixels[n];
            return Err(problem(
                icon,
                format!(
                    "pixel ({x},{y}) is rgba({},{},{},{}): an outline icon is only opaque white on a fully transparent background",
                    p[0], p[1], p[2], p[3]
                ),
            ));
        }
        if !img.pixels.iter().any(|p| p[3] == 255) {
            return Err(problem(icon, "has no white pixel: nothing would show"));
        }
    }
    Ok(())
}

/// Inside the mark (an "M": two posts and a V) at (u, v) in the unit square, v pointing down.
fn in_mark(u: f32, v: f32) -> bool {
    const STROKE: f32 = 0.2;
    if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
        return false;
    }
    if !(STROKE..1.0 - STROKE).contains(&u) {
        return true;
    }
    // The V joins the tops of the posts to the middle at 60 % of the height.
    let half = if u < 0.5 { u } else { 1.0 - u };
    let centre_at_v = STROKE / 2.0 + v * (0.5 - STROKE / 2.0) / 0.6;
    v < 0.75 && (half - centre_at_v).abs() < STROKE / 2.0 + 0.02
}

fn encode(size: u32, pixel: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
    let mut data = Vec::with_capacity((size * size * 4) as usize);
    for y in 0..size {
        for x in 0..size {
            data.extend_from_slice(&pixel(x, y));
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size, size);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("PNG header into memory");
        w.write_image_data(&data).expect("PNG data into memory");
    }
    out
}

fn rgb(hex: &str) -> [u8; 3] {
    let c = |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    [c(1), c(3), c(5)]
}

/// Colour icon: the accent colour as a full square, the white mark in the middle 96×96
/// (48 px padding, as the Teams icon guide asks); corners left square, Teams rounds them.
pub fn draw_color(accent: &str) -> Vec<u8> {
    let [r, g, b] = rgb(accent);
    encode(COLOR_SIZE, |x, y| {
        let (u, v) = ((x as f32 - 48.0) / 96.0, (y as f32 - 48.0) / 96.0);
        if in_mark(u, v) {
            [255, 255, 255, 255]
        } else {
            [r, g, b, 255]
        }
    })
}

/// Outline icon: the same mark, white on transparent, filling the square (no padding).
pub fn draw_outline() -> Vec<u8> {
    encode(OUTLINE_SIZE, |x, y| {
        let (u, v) = (x as f32 / 32.0, y as f32 / 32.0);
        if in_mark(u, v) {
            [255, 255, 255, 255]
        } else {
            [0, 0, 0, 0]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(size: u32, pixel: [u8; 4]) -> Vec<u8> {
        encode(size, |_, _| pixel)
    }

    #[test]
    fn drawn_icons_pass_their_checks() {
        check(Icon::Color, &draw_color("#F98012")).unwrap();
        check(Icon::Outline, &draw_outline()).unwrap();
    }

    #[test]
    fn a_191_px_colour_icon_is_refused_with_its_size() {
        let err = check(Icon::Color, &png_of(191, [1, 2, 3, 255])).unwrap_err();
        assert!(err.to_string().contains("191×191"), "{err}");
        assert!(err.to_string().contains("color.png"), "{err}");
    }

    #[test]
    fn an_opaque_outline_is_refused_naming_the_pixel() {
        let err = check(Icon::Outline, &png_of(32, [0, 0, 0, 255])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("outline.png") && text.contains("(0,0)"),
            "{text}"
        );
        // Half-transparent white is not allowed either.
        assert!(check(Icon::Outline, &png_of(32, [255, 255, 255, 128])).is_err());
        // Fully transparent everywhere shows nothing.
        assert!(check(Icon::Outline, &png_of(32, [0, 0, 0, 0])).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_png_is_refused_by_its_signature() {
        let err = check(Icon::Color, b"GIF89a....").unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
    }
}
