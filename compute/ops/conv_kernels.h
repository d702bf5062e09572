struct conv_geom {
	long k, stride, top, left, cin, h, w, oh, ow, ohw;
};
void im2col_f32(float *col, const float *x, const struct conv_geom *g, long n0, long n1);
void col2im_f32(float *dx, const float *col, const struct conv_geom *g, long n0, long n1);
