#version 330 core
// grid.frag draws a batch of N×C×H×W float images as a grid of tiles.
//
// The value mapping is mirrored, in the same order and in float32, by
// tileLevel in grid.go, and the layout by renderGridCPU; keep them in step.
//
// Rows: the fragment's row int(gl_FragCoord.y) is used as the row counted from
// the TOP of the image. The picture is therefore stored upside down in the
// framebuffer, and glReadPixels (which returns the bottom row first) hands
// back the rows top-down, in image.RGBA order, without a flip.

#extension GL_ARB_gpu_shader5 : enable
#ifdef GL_ARB_gpu_shader5
// "precise" forbids fusing a*b+c into an FMA, which would round differently
// from the CPU renderer.
#define PRECISE precise
#else
#define PRECISE
#endif

uniform sampler2D uData;   // R32F: the values, tiles laid out as in the output (see below)
uniform sampler2D uTiles;  // RGBA32F: tile (tc, tr)'s (lo, hi, scale, bias) at texel (tc, tr)
uniform isampler2D uMap;   // RG32I: texel (x, 0) = (tile column, source x or -1 in padding)
                           //        texel (y, 1) = (tile row,    source y or -1 in padding)
uniform int uN, uC, uH, uW; // batch shape
uniform int uCols;          // tiles per row
uniform vec4 uBackground;   // padding colour, already k/255 per channel

// uData holds channel c of tile (tc, tr) at texels
// (tc*W + x, (tr*C + c)*H + y): the shader needs no integer division, which
// llvmpipe (and many GPUs) do slowly; the maps are computed on the CPU.

out vec4 fragColor;

// level maps one value to an 8-bit level (returned as a float holding an
// integer): clip to [lo,hi], affine map to [0,1], round half to even.
float level(float v, vec4 t) {
    PRECISE float x = (clamp(v, t.x, t.y) - t.x) * t.z + t.w;
    PRECISE float y = clamp(x, 0.0, 1.0) * 255.0;
    return roundEven(y);
}

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy); // p.y: row from the top (see above)
    ivec2 mx = texelFetch(uMap, ivec2(p.x, 0), 0).xy;
    ivec2 my = texelFetch(uMap, ivec2(p.y, 1), 0).xy;
    int tile = my.x * uCols + mx.x;
    if (mx.y < 0 || my.y < 0 || tile >= uN) {
        fragColor = uBackground;
        return;
    }
    vec4 t = texelFetch(uTiles, ivec2(mx.x, my.x), 0);
    int tx = mx.x * uW + mx.y;
    int ty = my.x * uC * uH + my.y;
    float r = level(texelFetch(uData, ivec2(tx, ty), 0).r, t);
    float g = r;
    float b = r;
    if (uC == 3) {
        g = level(texelFetch(uData, ivec2(tx, ty + uH), 0).r, t);
        b = level(texelFetch(uData, ivec2(tx, ty + 2 * uH), 0).r, t);
    }
    // k/255 converts back to exactly k when the framebuffer stores UNORM8.
    fragColor = vec4(r, g, b, 255.0) / 255.0;
}
