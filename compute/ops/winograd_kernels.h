void wino_input_f32(float *v, const float *x, long n0, long n1, long cin, long h, long w, long th, long tw, long ld, long plane);
void wino_output_f32(float *y, const float *m, const float *bias, long n0, long n1, long cout, long h, long w, long th, long tw, long ld, long plane);
void wino_grad_output_f32(float *m, const float *dy, long n0, long n1, long cout, long h, long w, long th, long tw, long ld, long plane);
