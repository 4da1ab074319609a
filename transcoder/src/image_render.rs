//! Still-image derivatives: decode (JPEG, PNG, GIF, WebP; animated ones give
//! their first frame) under decode limits, apply the EXIF orientation, fit
//! inside each preset's box (never enlarging), and encode lossy WebP.
//!
//! Derivatives are made from decoded pixels alone, so no metadata (EXIF, GPS,
//! XMP, ICC comments) of the original ever reaches them.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use serde::{Deserialize, Serialize};

pub use crate::preset::{DecodeLimits, ImagePreset, Rendered};

/// What the original is, once oriented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Pixels wide, upright.
    pub width: u32,
    /// Pixels high, upright.
    pub height: u32,
}

/// Why an image could not be processed. The message is shown to the owner.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The header claims more pixels than allowed.
    #[error("the image declares {width}x{height} pixels, over the limit of {limit}")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The pixel limit.
        limit: u64,
    },
    /// Not an image we can decode, or a broken one.
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
    /// Writing the output failed.
    #[error("while writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn undecodable(e: impl std::fmt::Display) -> ImageError {
    ImageError::Undecodable(e.to_string())
}

/// Whether a JPEG's image data reaches its end-of-image marker. The JPEG
/// decoder pads a truncated scan with grey rather than failing; a cut-off
/// upload must fail instead of yielding half a picture.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    // Walk the marker segments (APPn, tables, frame) up to the first scan.
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            // Entropy-coded data escapes 0xFF as 0xFF00, so 0xFFD9 here is the real end.
            return bytes[i + 2 + len.min(bytes.len() - i - 2)..]
                .windows(2)
                .any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
    false
}

/// Decodes `input` upright, within `limits`, at full size.
pub fn decode(input: &Path, limits: DecodeLimits) -> Result<DynamicImage, ImageError> {
    decode_for(input, limits, None).map(|(image, _)| image)
}

/// Decodes `input` upright, within `limits`. Given the largest box the
/// result will be fitted into, a JPEG is shrunk while it is decoded (by 1/2,
/// 1/4 or 1/8 in the DCT, as libvips does), never below what that box
/// needs: a 12 MP photo bound for a 320 px thumbnail is decoded at 500×375.
pub fn decode_for(
    input: &Path,
    limits: DecodeLimits,
    largest_box: Option<(u32, u32)>,
) -> Result<(DynamicImage, ImageInfo), ImageError> {
    use std::io::{BufRead, Read};
    let io = |e| ImageError::Io(input.to_owned(), e);
    // One open, one read: the head is peeked from the buffer, and a JPEG
    // (read whole to check its end) is decoded from the bytes in memory.
    let mut file = BufReader::new(std::fs::File::open(input).map_err(io)?);
    if !file
        .fill_buf()
        .map_err(io)?
        .starts_with(&[0xFF, 0xD8, 0xFF])
    {
        return decode_from(file, None, limits, largest_box);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    if !jpeg_is_complete(&bytes) {
        return Err(ImageError::Undecodable(
            "the JPEG is truncated (its image data never ends)".into(),
        ));
    }
    decode_from(
        std::io::Cursor::new(&bytes[..]),
        Some(&bytes),
        limits,
        largest_box,
    )
}

/// [`decode_for`] from an open source; `jpeg` holds the bytes of a JPEG.
fn decode_from<R: std::io::BufRead + std::io::Seek>(
    source: R,
    jpeg: Option<&[u8]>,
    limits: DecodeLimits,
    largest_box: Option<(u32, u32)>,
) -> Result<(DynamicImage, ImageInfo), ImageError> {
    let mut reader = ImageReader::new(source)
        .with_guessed_format()
        .map_err(undecodable)?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    // Refuse on the header's word, before a single pixel is allocated.
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    let orientation = decoder.orientation().map_err(undecodable)?;
    let upright = if matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    ) {
        (height, width)
    } else {
        (width, height)
    };
    let shrunk = match (jpeg, largest_box) {
        (Some(bytes), Some(target)) => {
            let (fw, _) = fit(upright.0, upright.1, target.0, target.1);
            // The most the DCT may shrink while staying at or above the fitted size.
            let shrink = [8u32, 4, 2]
                .into_iter()
                .find(|&d| upright.0.div_ceil(d) >= fw)
                .unwrap_or(1);
            if shrink > 1 {
                // A JPEG libjpeg-turbo cannot give as RGB (CMYK) takes the full decode.
                decode_jpeg_shrunk(bytes, shrink).ok()
            } else {
                None
            }
        }
        _ => None,
    };
    let mut image = match shrunk {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(undecodable)?,
    };
    image.apply_orientation(orientation);
    let info = ImageInfo {
        width: upright.0,
        height: upright.1,
    };
    Ok((image, info))
}

/// Decodes a JPEG at 1/`shrink` of its size in the DCT (libjpeg-turbo).
fn decode_jpeg_shrunk(bytes: &[u8], shrink: u32) -> Result<DynamicImage, turbojpeg::Error> {
    let scale = turbojpeg::ScalingFactor::new(1, shrink as usize);
    let mut decompressor = turbojpeg::Decompressor::new()?;
    let header = decompressor.read_header(bytes)?.scaled(scale);
    decompressor.set_scaling_factor(scale)?;
    let mut pixels = vec![0u8; 3 * header.width * header.height];
    decompressor.decompress(
        bytes,
        turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: header.width,
            pitch: 3 * header.width,
            height: header.height,
            format: turbojpeg::PixelFormat::RGB,
        },
    )?;
    let image = image::RgbImage::from_raw(header.width as u32, header.height as u32, pixels)
        .ok_or(turbojpeg::Error::Null)?;
    Ok(DynamicImage::ImageRgb8(image))
}

/// The size that fits `(w, h)` inside `(max_w, max_h)` keeping the aspect
/// ratio, never larger than the original, at least 1×1.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w.max(1), h.max(1));
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let fw = (f64::from(w) * scale).round().max(1.0) as u32;
    let fh = (f64::from(h) * scale).round().max(1.0) as u32;
    (fw.min(max_w), fh.min(max_h))
}

/// Makes every preset's derivative of `input` in `out_dir`.
pub fn render(
    input: &Path,
    out_dir: &Path,
    presets: &[ImagePreset],
    limits: DecodeLimits,
) -> Result<(ImageInfo, Vec<Rendered>), ImageError> {
    let largest_box = presets
        .iter()
        .map(|p| (p.max_width, p.max_height))
        .max_by_key(|&(w, h)| u64::from(w) * u64::from(h));
    let (image, info) = decode_for(input, limits, largest_box)?;
    Ok((info, render_image(&image, out_dir, presets, info)?))
}

/// Makes every preset's derivative of decoded pixels in `out_dir`. The
/// sizes are fitted from `original` (the full upright size), which the
/// pixels may be a DCT-shrunk copy of.
pub fn render_image(
    image: &DynamicImage,
    out_dir: &Path,
    presets: &[ImagePreset],
    original: ImageInfo,
) -> Result<Vec<Rendered>, ImageError> {
    let mut out = Vec::with_capacity(presets.len());
    for preset in presets {
        let (w, h) = fit(
            original.width,
            original.height,
            preset.max_width,
            preset.max_height,
        );
        let resized = if (w, h) == (image.width(), image.height()) {
            image.clone()
        } else {
            image.resize_exact(w, h, FilterType::Triangle)
        };
        let encoded = encode_webp(&resized, preset.quality);
        let path = out_dir.join(format!("{}.webp", preset.name));
        std::fs::write(&path, &encoded).map_err(|e| ImageError::Io(path.clone(), e))?;
        out.push(Rendered {
            preset: preset.name.clone(),
            version: preset.version,
            path,
            content_type: "image/webp".into(),
            size: encoded.len() as u64,
            width: w,
            height: h,
            duration_ms: None,
        });
    }
    Ok(out)
}

/// Lossy WebP of the pixels (alpha kept when there is any).
fn encode_webp(image: &DynamicImage, quality: f32) -> Vec<u8> {
    if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        webp::Encoder::from_rgba(&rgba, rgba.width(), rgba.height())
            .encode(quality)
            .to_vec()
    } else {
        let rgb = image.to_rgb8();
        webp::Encoder::from_rgb(&rgb, rgb.width(), rgb.height())
            .encode(quality)
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(4000, 3000, 320, 320), (320, 240));
        assert_eq!(fit(3000, 4000, 320, 320), (240, 320));
        assert_eq!(fit(100, 50, 320, 320), (100, 50));
        assert_eq!(fit(10_000, 1, 320, 320), (320, 1));
        assert_eq!(fit(1600, 1600, 1600, 1600), (1600, 1600));
    }

    fn presets() -> Vec<ImagePreset> {
        vec![ImagePreset {
            name: "thumb".into(),
            version: 1,
            max_width: 32,
            max_height: 32,
            quality: 80.0,
        }]
    }

    #[test]
    fn a_png_becomes_a_webp_within_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.png");
        image::RgbImage::from_fn(120, 60, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .save(&input)
            .expect("save png");
        let (info, out) =
            render(&input, dir.path(), &presets(), DecodeLimits::default()).expect("renders");
        assert_eq!((info.width, info.height), (120, 60));
        assert_eq!((out[0].width, out[0].height), (32, 16));
        let back = image::open(&out[0].path).expect("webp decodes");
        assert_eq!((back.width(), back.height()), (32, 16));
        assert_eq!(&std::fs::read(&out[0].path).expect("read")[8..12], b"WEBP");
    }

    #[test]
    fn jpegs_shrink_while_decoding_and_look_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("big.jpg");
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| {
            image::Rgb([(x / 8) as u8, (y / 6) as u8, ((x + y) / 14) as u8])
        });
        image::codecs::jpeg::JpegEncoder::new_with_quality(
            std::fs::File::create(&input).expect("create"),
            90,
        )
        .encode_image(&img)
        .expect("encode");
        let limits = DecodeLimits::default();
        // Bound for 200 px: 1/8 still gives 250 px, so that is what is decoded.
        let (shrunk, info) = decode_for(&input, limits, Some((200, 200))).expect("decode");
        assert_eq!((shrunk.width(), shrunk.height()), (250, 188));
        assert_eq!((info.width, info.height), (2000, 1500));
        // Bound for 600 px: 1/2 (1000 px) is the most it may shrink.
        let (half, _) = decode_for(&input, limits, Some((600, 600))).expect("decode");
        assert_eq!(half.width(), 1000);

        let preset = ImagePreset {
            name: "t".into(),
            version: 1,
            max_width: 200,
            max_height: 200,
            quality: 90.0,
        };
        let (_, fast) =
            render(&input, dir.path(), std::slice::from_ref(&preset), limits).expect("render");
        assert_eq!((fast[0].width, fast[0].height), (200, 150));
        let fast = image::open(&fast[0].path).expect("webp").to_rgb8();
        let full = decode(&input, limits).expect("full decode");
        let slow = full.resize_exact(200, 150, FilterType::Triangle).to_rgb8();
        let diff: f64 = fast
            .pixels()
            .zip(slow.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (f64::from(a[c]) - f64::from(b[c])).abs()))
            .sum::<f64>()
            / (200.0 * 150.0 * 3.0);
        assert!(diff < 3.0, "shrink-on-load differs by {diff} levels");
    }

    #[test]
    fn animated_images_give_their_first_frame() {
        use image::codecs::gif::GifEncoder;
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("anim.gif");
        {
            let mut encoder = GifEncoder::new(std::fs::File::create(&input).expect("create"));
            for colour in [[220u8, 20, 20, 255], [20, 20, 220, 255]] {
                let frame =
                    image::Frame::new(image::RgbaImage::from_pixel(64, 64, image::Rgba(colour)));
                encoder.encode_frame(frame).expect("frame");
            }
        }
        let (_, out) =
            render(&input, dir.path(), &presets(), DecodeLimits::default()).expect("renders");
        let thumb = image::open(&out[0].path).expect("webp").to_rgb8();
        let p = thumb.get_pixel(16, 16);
        assert!(p[0] > 150 && p[2] < 100, "not the first (red) frame: {p:?}");
    }

    #[test]
    fn truncated_jpegs_are_caught() {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&image::RgbImage::from_fn(64, 64, |x, y| {
                image::Rgb([x as u8, y as u8, 0])
            }))
            .expect("encode");
        assert!(jpeg_is_complete(&jpeg));
        assert!(!jpeg_is_complete(&jpeg[..jpeg.len() / 2]));
        assert!(!jpeg_is_complete(&jpeg[..jpeg.len() - 2]));
        assert!(!jpeg_is_complete(b"\xff\xd8"));
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("big.png");
        image::GrayImage::new(300, 300).save(&input).expect("save");
        let tiny = DecodeLimits {
            max_pixels: 10_000,
            max_alloc: 1 << 20,
        };
        assert!(matches!(
            render(&input, dir.path(), &presets(), tiny),
            Err(ImageError::TooLarge { .. })
        ));
        let junk = dir.path().join("junk.jpg");
        std::fs::write(&junk, b"\xff\xd8\xff\xe0 definitely not a jpeg").expect("write");
        assert!(matches!(
            render(&junk, dir.path(), &presets(), DecodeLimits::default()),
            Err(ImageError::Undecodable(_))
        ));
    }
}
