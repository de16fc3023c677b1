// The CUDA emulator's math_constants.h: the constants kernels/cuda uses.
#ifndef TMIX_EMU_MATH_CONSTANTS_H
#define TMIX_EMU_MATH_CONSTANTS_H

#define CUDART_NAN   (__builtin_nan(""))
#define CUDART_NAN_F (__builtin_nanf(""))
#define CUDART_INF   (__builtin_inf())
#define CUDART_INF_F (__builtin_inff())

#endif
