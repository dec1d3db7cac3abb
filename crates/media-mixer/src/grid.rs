//! The video grid: up to nine sources composed on one canvas — one source
//! full, two to four in 2x2, five to nine in 3x3 — each scaled with its
//! aspect ratio kept (black borders), a placeholder for a source without
//! video, and only tiles whose source produced a new frame re-scaled.

use crate::error::Error;
use crate::scale::{Plane, PlaneMut, ScaleError, Scaler};

/// A planar YUV 4:2:0 picture (even width and height, no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma, `width * height`.
    pub y: Vec<u8>,
    /// Cb, `width/2 * height/2`.
    pub u: Vec<u8>,
    /// Cr, `width/2 * height/2`.
    pub v: Vec<u8>,
}

/// Video-range black.
pub const BLACK: (u8, u8, u8) = (16, 128, 128);
/// The placeholder of a tile without video (dark grey).
pub const PLACEHOLDER: (u8, u8, u8) = (48, 128, 128);

/// Checks that an encoder (`encode` gives a frame's length and whether it is a keyframe) takes a
/// new bitrate mid-stream (`set`): 1.5 Mbit/s, then 200 kbit/s, then 1.5 Mbit/s again, each
/// measured on busy moving 640x360 pictures at 30 a second over the second half of three seconds,
/// and no keyframe for a change (the stream's first picture, a keyframe, is not counted).
#[cfg(test)]
pub(crate) fn check_bitrate_changes<E>(enc: &mut E, set: fn(&mut E, u32), encode: fn(&mut E, &I420) -> (usize, bool)) {
    let run = |enc: &mut E, start: u32| {
        let (mut bytes, mut keyframe) = (0usize, false);
        for n in start..start + 90 {
            let (len, key) = encode(enc, &I420::moving(640, 360, n).unwrap_or_else(|| panic!("a valid size")));
            keyframe |= key && n > 0;
            if n >= start + 45 {
                bytes += len;
            }
        }
        ((bytes * 8 * 30 / 45) as u32, keyframe)
    };
    set(enc, 1_500_000);
    let (high, _) = run(enc, 0);
    set(enc, 200_000);
    let (low, key_down) = run(enc, 90);
    set(enc, 1_500_000);
    let (back, key_up) = run(enc, 180);
    assert!((1_000_000..2_000_000).contains(&high), "{high} bit/s at 1.5 Mbit/s");
    assert!((100_000..300_000).contains(&low), "{low} bit/s at 200 kbit/s");
    assert!(back > 1_000_000, "{back} bit/s at 1.5 Mbit/s again");
    assert!(!key_down && !key_up, "no keyframe for a new bitrate");
}

impl I420 {
    /// A picture filled with one colour.
    pub fn filled(width: u32, height: u32, (y, u, v): (u8, u8, u8)) -> Result<I420, Error> {
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return Err(Error::Decode("I420 dimensions must be even and non-zero"));
        }
        let (w, h) = (width as usize, height as usize);
        Ok(I420 { width, height, y: vec![y; w * h], u: vec![u; w * h / 4], v: vec![v; w * h / 4] })
    }

    /// Whether the picture is `width` x `height` and its planes have
    /// exactly the sizes that implies.
    pub fn has_size(&self, width: u32, height: u32) -> bool {
        let n = width as usize * height as usize;
        self.width == width
            && self.height == height
            && self.y.len() == n
            && self.u.len() == n / 4
            && self.v.len() == n / 4
    }

    /// A test picture, busy and moving with `frame` like a camera panning over a textured
    /// scene: waves of periods from 7 to 53 pixels moving 6 pixels left and 4 up a frame (which
    /// an encoder's motion search follows), with a little grain of its own in every frame (which
    /// it cannot). An encoder spends whatever bitrate it is given on it: for tests and benchmarks
    /// of rates, losses and repair. `None` for sizes [`filled`](Self::filled) refuses.
    pub fn moving(width: u32, height: u32, frame: u32) -> Option<I420> {
        let mut p = I420::filled(width, height, BLACK).ok()?;
        let wave = |n: usize, shift: u32, periods: [(f32, f32); 2]| -> Vec<f32> {
            (0..n as u32)
                .map(|i| {
                    let t = (i + shift) as f32 * std::f32::consts::TAU;
                    periods.iter().map(|(period, amplitude)| amplitude * (t / period).sin()).sum()
                })
                .collect()
        };
        let (w, h, f) = (width as usize, height as usize, frame);
        let across = wave(w, 6 * f, [(37.0, 40.0), (11.0, 20.0)]);
        let down = wave(h, 4 * f, [(29.0, 40.0), (7.0, 15.0)]);
        let diagonal = wave(w + h, 10 * f, [(53.0, 30.0), (17.0, 10.0)]);
        for y in 0..h {
            for x in 0..w {
                let grain = ((x as u32 ^ (y as u32) << 11 ^ f << 21).wrapping_mul(0x9e37_79b1) >> 29) as f32 - 3.5;
                let luma = 128.0 + across[x] + down[y] + diagonal[x + y] + grain;
                p.y[y * w + x] = luma.clamp(16.0, 235.0) as u8;
            }
        }
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                let i = y * (w / 2) + x;
                p.u[i] = (128.0 + across[2 * x] / 2.0 - down[2 * y] / 2.0) as u8;
                p.v[i] = (128.0 + diagonal[2 * (x + y)] / 1.5) as u8;
            }
        }
        Some(p)
    }

    /// The (Y, U, V) value at a pixel.
    pub fn pixel(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let (w, cw) = (self.width as usize, self.width as usize / 2);
        let (x, y) = (x as usize, y as usize);
        (self.y[y * w + x], self.u[(y / 2) * cw + x / 2], self.v[(y / 2) * cw + x / 2])
    }

    fn fill_rect(&mut self, r: Rect, (y, u, v): (u8, u8, u8)) {
        let w = self.width as usize;
        for row in r.y..r.y + r.h {
            let start = row as usize * w + r.x as usize;
            self.y[start..start + r.w as usize].fill(y);
        }
        let cw = w / 2;
        for row in r.y / 2..(r.y + r.h) / 2 {
            let start = row as usize * cw + r.x as usize / 2;
            self.u[start..start + r.w as usize / 2].fill(u);
            self.v[start..start + r.w as usize / 2].fill(v);
        }
    }
}

/// A rectangle on the canvas (even coordinates and sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

fn even(v: u32) -> u32 {
    v & !1
}

/// The cells of a grid for `n` sources on a `width` x `height` canvas.
pub fn cells(n: usize, width: u32, height: u32) -> Vec<Rect> {
    let g: u32 = match n {
        0 => return Vec::new(),
        1 => 1,
        2..=4 => 2,
        _ => 3,
    };
    let (cw, ch) = (even(width / g), even(height / g));
    (0..n.min(9) as u32).map(|i| Rect { x: (i % g) * cw, y: (i / g) * ch, w: cw, h: ch }).collect()
}

/// Where a `src_w` x `src_h` picture goes inside `cell`, aspect ratio kept
/// and centred.
pub fn fit(src_w: u32, src_h: u32, cell: Rect) -> Rect {
    if src_w == 0 || src_h == 0 || cell.w < 2 || cell.h < 2 {
        return cell;
    }
    let scale = f64::min(f64::from(cell.w) / f64::from(src_w), f64::from(cell.h) / f64::from(src_h));
    let w = even((f64::from(src_w) * scale).round() as u32).clamp(2, cell.w);
    let h = even((f64::from(src_h) * scale).round() as u32).clamp(2, cell.h);
    Rect { x: cell.x + even((cell.w - w) / 2), y: cell.y + even((cell.h - h) / 2), w, h }
}

/// One source for a composition.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Stable identity (a stream).
    pub id: u64,
    /// Increases every time the source decodes a new picture.
    pub generation: u64,
    /// Its latest picture; `None` shows the placeholder.
    pub picture: Option<&'a I420>,
}

/// What a composition cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComposeStats {
    /// Tiles re-scaled this time.
    pub rescaled: usize,
    /// Whether the layout changed (a keyframe is advisable).
    pub layout_changed: bool,
    /// Whether anything was drawn: a tile re-scaled, cleared or given its placeholder, or the
    /// layout changed. When false the canvas is exactly what it was, and an encoder fed at a
    /// fixed rate has nothing new to say.
    pub changed: bool,
}

/// Composes sources onto a canvas, keeping what did not change.
pub struct Compositor {
    canvas: I420,
    drawn: Vec<Option<(u64, u64, Rect)>>,
    /// Area averaging when shrinking, bilinear when growing.
    scaler: Scaler,
}

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compositor")
            .field("width", &self.canvas.width)
            .field("height", &self.canvas.height)
            .field("tiles", &self.drawn.len())
            .finish()
    }
}

impl Compositor {
    /// A black canvas (default 1280x720).
    pub fn new(width: u32, height: u32) -> Result<Compositor, Error> {
        if width < 6 || height < 6 {
            // Nine cells of at least 2x2 (I420's least picture).
            return Err(Error::Decode("a grid canvas needs at least 6x6 pixels"));
        }
        Ok(Compositor { canvas: I420::filled(width, height, BLACK)?, drawn: Vec::new(), scaler: Scaler::new() })
    }

    /// The canvas.
    pub fn canvas(&self) -> &I420 {
        &self.canvas
    }

    /// Composes up to nine sources, in the order given (the caller puts the
    /// most relevant first, e.g. the most recent speakers); more are ignored.
    pub fn compose(&mut self, sources: &[Source<'_>]) -> Result<ComposeStats, Error> {
        let n = sources.len().min(9);
        let mut stats = ComposeStats::default();
        if n != self.drawn.len() {
            let (w, h) = (self.canvas.width, self.canvas.height);
            self.canvas.fill_rect(Rect { x: 0, y: 0, w, h }, BLACK);
            self.drawn = vec![None; n];
            stats.layout_changed = true;
            stats.changed = true;
        }
        let grid = cells(n, self.canvas.width, self.canvas.height);
        for (i, (src, cell)) in sources.iter().zip(grid).enumerate() {
            let key = match src.picture {
                Some(p) => (src.id, src.generation, fit(p.width, p.height, cell)),
                None => (src.id, u64::MAX, cell),
            };
            let previous = self.drawn[i];
            if previous == Some(key) {
                continue;
            }
            stats.changed = true;
            // A different source or size in this cell: clear it first.
            if previous.is_none_or(|(id, _, r)| id != key.0 || r != key.2) {
                self.canvas.fill_rect(cell, BLACK);
            }
            match src.picture {
                Some(p) => {
                    self.scale_into(p, key.2)?;
                    stats.rescaled += 1;
                }
                None => self.canvas.fill_rect(cell, PLACEHOLDER),
            }
            self.drawn[i] = Some(key);
        }
        Ok(stats)
    }

    fn scale_into(&mut self, p: &I420, r: Rect) -> Result<(), Error> {
        if !p.has_size(p.width, p.height) {
            return Err(Error::Decode("picture buffer does not match its size"));
        }
        let (cw, pw) = (self.canvas.width as usize, p.width);
        let planes = [
            (&p.y, pw, p.height, &mut self.canvas.y, 1, cw),
            (&p.u, pw / 2, p.height / 2, &mut self.canvas.u, 2, cw / 2),
            (&p.v, pw / 2, p.height / 2, &mut self.canvas.v, 2, cw / 2),
        ];
        for (src, width, height, dst, div, stride) in planes {
            let src = Plane { data: src, width, height, stride: width as usize };
            let dst = PlaneMut { data: dst, stride, x: r.x / div, y: r.y / div, width: r.w / div, height: r.h / div };
            self.scaler.scale(src, dst).map_err(|e| {
                Error::Decode(match e {
                    ScaleError::Empty => "an empty picture or tile",
                    ScaleError::SourceTooShort => "picture buffer does not match its size",
                    ScaleError::OutsideDestination => "tile outside the canvas",
                })
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colour(w: u32, h: u32, c: (u8, u8, u8)) -> I420 {
        I420::filled(w, h, c).expect("picture")
    }

    #[test]
    fn geometry_for_one_to_nine() {
        assert!(cells(0, 1280, 720).is_empty());
        assert_eq!(cells(1, 1280, 720), vec![Rect { x: 0, y: 0, w: 1280, h: 720 }]);
        let two = cells(2, 1280, 720);
        assert_eq!(two[1], Rect { x: 640, y: 0, w: 640, h: 360 });
        for n in 1..=9 {
            let c = cells(n, 1280, 720);
            assert_eq!(c.len(), n);
            for (i, a) in c.iter().enumerate() {
                assert!(a.x + a.w <= 1280 && a.y + a.h <= 720);
                for b in &c[i + 1..] {
                    let overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
                    assert!(!overlap, "{n}: {a:?} {b:?}");
                }
            }
        }
        assert_eq!(cells(5, 1280, 720)[4], Rect { x: 426, y: 240, w: 426, h: 240 });
        // 4:3 in a 16:9 cell: pillar-boxed, centred.
        let r = fit(640, 480, Rect { x: 0, y: 0, w: 1280, h: 720 });
        assert_eq!(r, Rect { x: 160, y: 0, w: 960, h: 720 });
        // Portrait phone video in a landscape cell.
        let r = fit(360, 640, Rect { x: 640, y: 360, w: 640, h: 360 });
        assert_eq!((r.h, r.y, r.w % 2), (360, 360, 0));
    }

    /// The smallest canvas composes nine sources (cells of 2x2); smaller ones are refused, and
    /// `fit` into a cell too small for a picture never panics.
    #[test]
    fn tiny_canvases_are_refused_or_composed() {
        assert!(Compositor::new(4, 720).is_err() && Compositor::new(1280, 4).is_err());
        let mut c = Compositor::new(6, 6).expect("the least canvas");
        let pic = colour(64, 36, (200, 50, 50));
        let sources: Vec<Source<'_>> = (0..9).map(|i| Source { id: i, generation: 1, picture: Some(&pic) }).collect();
        for n in 1..=9 {
            c.compose(&sources[..n]).expect("composed");
        }
        assert_eq!(fit(64, 36, Rect { x: 0, y: 0, w: 0, h: 0 }), Rect { x: 0, y: 0, w: 0, h: 0 });
        assert_eq!(fit(64, 36, Rect { x: 2, y: 2, w: 1, h: 8 }).w, 1);
    }

    #[test]
    fn pixels_of_a_3x3_composition() {
        let mut c = Compositor::new(1280, 720).expect("canvas");
        let colours: Vec<(u8, u8, u8)> =
            (0..7).map(|i| (60 + 20 * i as u8, 90 + 10 * i as u8, 200 - 10 * i as u8)).collect();
        let pics: Vec<I420> = colours.iter().map(|c| colour(640, 360, *c)).collect();
        let mut sources: Vec<Source<'_>> =
            pics.iter().enumerate().map(|(i, p)| Source { id: i as u64, generation: 1, picture: Some(p) }).collect();
        sources.push(Source { id: 99, generation: 1, picture: None });
        let stats = c.compose(&sources).expect("compose");
        assert_eq!(stats.rescaled, 7);
        assert!(stats.layout_changed);
        let grid = cells(8, 1280, 720);
        for (i, cell) in grid.iter().enumerate() {
            let (cx, cy) = (cell.x + cell.w / 2, cell.y + cell.h / 2);
            let expected = if i < 7 { colours[i] } else { PLACEHOLDER };
            assert_eq!(c.canvas().pixel(cx, cy), expected, "tile {i}");
        }
        // The ninth cell (empty) is black.
        assert_eq!(c.canvas().pixel(1280 - 10, 720 - 10), BLACK);
        assert!(stats.changed);
        // Nothing changed: nothing is re-scaled or drawn.
        let again = c.compose(&sources).expect("again");
        assert_eq!((again.rescaled, again.changed), (0, false));
        // One source has a new frame: only its tile.
        sources[3].generation = 2;
        let one = c.compose(&sources).expect("one");
        assert_eq!((one.rescaled, one.changed), (1, true));
        // A source that loses its video: its placeholder is drawn, nothing re-scaled.
        sources[2].picture = None;
        let lost = c.compose(&sources).expect("lost");
        assert_eq!((lost.rescaled, lost.changed, lost.layout_changed), (0, true, false));
        assert!(!c.compose(&sources).expect("still").changed);
    }

    #[test]
    fn letterbox_and_reflow() {
        let mut c = Compositor::new(1280, 720).expect("canvas");
        let tall = colour(360, 640, (200, 60, 60));
        let s = [Source { id: 1, generation: 1, picture: Some(&tall) }];
        c.compose(&s).expect("one");
        assert_eq!(c.canvas().pixel(640, 360), (200, 60, 60), "centre");
        assert_eq!(c.canvas().pixel(10, 360), BLACK, "pillar-box border");
        let wide = colour(640, 360, (100, 100, 100));
        let two = [
            Source { id: 1, generation: 1, picture: Some(&tall) },
            Source { id: 2, generation: 1, picture: Some(&wide) },
        ];
        let st = c.compose(&two).expect("two");
        assert!(st.layout_changed);
        assert_eq!(c.canvas().pixel(960, 180), (100, 100, 100));
        assert_eq!(c.canvas().pixel(640 + 5, 360 + 180), BLACK, "empty bottom cells are black");
        // A resolution change of one source clears its old tile.
        let small = colour(320, 240, (150, 128, 128));
        let changed = [two[0], Source { id: 2, generation: 2, picture: Some(&small) }];
        c.compose(&changed).expect("resize");
        assert_eq!(c.canvas().pixel(640 + 2, 2), BLACK, "old pixels cleared");
        assert_eq!(c.canvas().pixel(960, 180), (150, 128, 128));
        assert!(I420::filled(3, 2, BLACK).is_err());
    }
}
