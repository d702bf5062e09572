// The CPU emulator of the device kernels (emu.c).
#ifndef DDPM_EMU_H
#define DDPM_EMU_H

// emu_launch runs kernel number kernel (dispatch_gen.c) over a grid of gx×gy×gz blocks of
// bx×by×bz threads with the given arguments; it returns NULL, or what went wrong.
const char *emu_launch(int kernel, const unsigned long long *args, long gx, long gy, long gz, long bx, long by, long bz);

#endif
