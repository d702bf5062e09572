void softmax_rows_f32(float *y, const float *x, long lo, long hi, long w, float scale);
void softmax_grad_rows_f32(float *dx, const float *y, const float *dy, long lo, long hi, long w, float scale);
