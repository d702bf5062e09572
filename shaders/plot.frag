#version 330 core
// plot.frag draws the pixels of a line chart: background, grid lines, the
// anti-aliased series and the axes with their tick marks. Text is not drawn
// here; it is added afterwards on the CPU by code shared with the CPU
// renderer.
//
// Every operation here is mirrored, in the same order and in float32, by
// renderPlotCPU, coverage, dist2 and over in plotraster.go; keep them in
// step.
//
// Rows: int(gl_FragCoord.y) is the row counted from the TOP of the image (the
// picture is stored upside down so that glReadPixels returns it top-down).

#extension GL_ARB_gpu_shader5 : enable
#ifdef GL_ARB_gpu_shader5
#define PRECISE precise
#else
#define PRECISE
#endif

const int MAX_SERIES = 16;

uniform ivec4 uRect;             // plot area: left, top, width, height in pixels
uniform int uTick;               // length of the tick marks outside the axes
uniform vec4 uBackground;        // premultiplied RGBA in [0,1] (k/255)
uniform vec4 uAxis;
uniform vec4 uGridMajor;
uniform vec4 uGridMinor;
uniform int uNS;                 // number of series
uniform vec4 uColor[MAX_SERIES]; // premultiplied series colours
uniform float uHalfWidth[MAX_SERIES];
uniform int uReach[MAX_SERIES];  // columns to look at on each side: ceil(halfWidth + 1)
// Integer lookups, prepared on the CPU (plot.go, plotraster.go):
// texel (x, 0)   = (grid line kind of plot column x: 0 none, 1 major (also
//                  gets a tick mark), 2 minor, unused)
// texel (y, 1)   = (grid line kind of plot row y, unused)
// texel (x, 2+s) = (lo, hi): the rows of column x outside which series s
//                  has no coverage at all (a conservative band); skipping
//                  them only saves time, it changes no pixel.
uniform isampler2D uInfo;
// Per-column geometry of every series, prepared on the CPU (plot.go):
// texel (j, 2s)   = (ax, ay, dx, dy): chord of series s across column j, from
//                   (ax, ay) to (ax+dx, ay+dy), in plot-area pixel units;
// texel (j, 2s+1) = (1/(dx*dx+dy*dy) or 0, lo, hi, valid): the vertical span
//                   [lo, hi] at x = j+0.5 covers the data points inside the
//                   column (lo > hi: none); valid == 0: the series does not
//                   reach column j.
uniform sampler2D uColumns;

out vec4 fragColor;

// over composites the premultiplied colour src with coverage cov onto dst.
vec4 over(vec4 dst, vec4 src, float cov) {
    PRECISE float k = 1.0 - src.a * cov;
    PRECISE vec4 r = dst * k + src * cov;
    return r;
}

// dist2 is the squared distance from q to column j's chord and span.
float dist2(vec2 q, int j, vec4 a, vec4 b) {
    PRECISE float wx = q.x - a.x;
    PRECISE float wy = q.y - a.y;
    PRECISE float t = clamp((wx * a.z + wy * a.w) * b.x, 0.0, 1.0);
    PRECISE float ex = wx - t * a.z;
    PRECISE float ey = wy - t * a.w;
    PRECISE float d = ex * ex + ey * ey;
    if (b.y <= b.z) {
        PRECISE float sx = q.x - (float(j) + 0.5);
        PRECISE float sy = q.y - clamp(q.y, b.y, b.z);
        PRECISE float e = sx * sx + sy * sy;
        d = min(d, e);
    }
    return d;
}

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy); // p.y: row from the top
    vec4 c = uBackground;
    int lx = p.x - uRect.x;
    int ly = p.y - uRect.y;
    if (lx >= 0 && ly >= 0 && lx < uRect.z && ly < uRect.w) {
        int xk = texelFetch(uInfo, ivec2(lx, 0), 0).x;
        int yk = texelFetch(uInfo, ivec2(ly, 1), 0).x;
        int kind = 0; // 0 none, 1 major, 2 minor grid line
        if (xk == 1 || yk == 1) {
            kind = 1;
        } else if (xk == 2 || yk == 2) {
            kind = 2;
        }
        if (kind == 1) {
            c = over(c, uGridMajor, 1.0);
        } else if (kind == 2) {
            c = over(c, uGridMinor, 1.0);
        }
        vec2 q = vec2(float(lx) + 0.5, float(ly) + 0.5);
        for (int s = 0; s < uNS; s++) {
            ivec2 band = texelFetch(uInfo, ivec2(lx, 2 + s), 0).xy;
            if (ly < band.x || ly > band.y) {
                continue;
            }
            float best = 1e30;
            int j0 = max(lx - uReach[s], 0);
            int j1 = min(lx + uReach[s], uRect.z - 1);
            for (int j = j0; j <= j1; j++) {
                vec4 b = texelFetch(uColumns, ivec2(j, 2 * s + 1), 0);
                if (b.w == 0.0) {
                    continue;
                }
                vec4 a = texelFetch(uColumns, ivec2(j, 2 * s), 0);
                best = min(best, dist2(q, j, a, b));
            }
            PRECISE float cov = clamp(uHalfWidth[s] + 0.5 - sqrt(best), 0.0, 1.0);
            if (cov > 0.0) {
                c = over(c, uColor[s], cov);
            }
        }
    }
    int left = uRect.x - 1;        // column of the y axis
    int bottom = uRect.y + uRect.w; // row of the x axis
    bool axis = (p.x == left && p.y >= uRect.y && p.y <= bottom) ||
                (p.y == bottom && p.x >= left && p.x < uRect.x + uRect.z);
    if (!axis && p.y > bottom && p.y <= bottom + uTick && p.x >= uRect.x && p.x < uRect.x + uRect.z) {
        axis = texelFetch(uInfo, ivec2(p.x - uRect.x, 0), 0).x == 1;
    }
    if (!axis && p.x < left && p.x >= left - uTick && p.y >= uRect.y && p.y < uRect.y + uRect.w) {
        axis = texelFetch(uInfo, ivec2(p.y - uRect.y, 1), 0).x == 1;
    }
    if (axis) {
        c = over(c, uAxis, 1.0);
    }
    PRECISE vec4 k = c * 255.0;
    fragColor = roundEven(k) / 255.0;
}
