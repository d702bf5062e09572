// Package cuda is the CUDA backend of package gpu (build tag cuda): see README.
package cuda
