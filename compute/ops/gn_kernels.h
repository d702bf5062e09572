void gn_forward_f32(float *y, const float *x, const float *gamma, const float *beta,
                    long lo, long hi, long groups, long cg, long hw, double eps, int act);
void gn_stats_f32(float *st, const float *x, const float *gamma, const float *beta, const float *dy,
                  long lo, long hi, long groups, long c, long cg, long hw, double eps, int act);
void gn_dx_f32(float *dx, const float *x, const float *gamma, const float *beta, const float *dy, const float *st,
               long lo, long hi, long groups, long c, long cg, long hw, int act);
