// Package weights reads the DDPM paper's published weights and writes ours for
// the Python ecosystem: PyTorch checkpoints in the PyTorch port's naming
// (pesser/pytorch_diffusion's converted model-*.ckpt) and diffusers
// DDPMPipeline folders (google/ddpm-cifar10-32, google/ddpm-church-256, …),
// both ways.
//
// Decisions, and why:
//   - Open finds the format from the content (a zip with ARCHIVE/data.pkl, the
//     legacy torch stream, a safetensors header, a folder with model_index.json
//     or config.json), not from the extension: the same .bin or .ckpt name is
//     used for all of them. The tar format of torch < 0.4 is refused with a
//     message; the legacy stream of torch < 1.6 is read.
//   - PyTorch pickles are read by our own restricted unpickler (pickle.go), the
//     opcode subset of torch's weights_only loader, with GLOBAL limited to
//     OrderedDict, torch's _rebuild_tensor(_v2)/_rebuild_parameter and storage
//     types. github.com/nlpodyssey/gopickle is not used: its unpickler allocates
//     whatever length a file claims before reading it (a FRAME or BINBYTES8 of
//     2^60 bytes panics or exhausts memory), panics on a LONG1 of zero bytes,
//     makes any unknown GLOBAL a generic object, and its PyTorch loader panics
//     on legacy tar files and storage views and allocates the storage size the
//     pickle declares (TestGopickleUnsafe shows the panics). Nothing is ever
//     called: the allow-listed names are interpreted, not run.
//   - Untrusted input is bounded before anything is allocated: the pickle part
//     to 16 MiB and 2^20 opcodes, each tensor to lie inside its storage and each
//     storage inside its record and the record inside the file (compressed
//     records, which torch never writes, are refused, so no zip bomb can
//     expand), shapes to 2^31 per dimension, the model to 2^30 parameters and
//     its float32 copy to twice the file (tensors that share a storage cannot
//     claim more). Tensor data is read only for the parameters of the model the
//     shapes describe, straight into the float32 slices; a zip record read
//     whole is checked against its CRC-32.
//   - The architecture comes from a diffusers config.json when there is one
//     (checked against every tensor's shape), else from the tensor shapes (ch
//     from conv_in, ch_mult from each level's first convolution, the blocks and
//     attention levels from the names). The image size is not in a checkpoint:
//     it is the matching preset's, else the size that puts the first attention
//     at 16×16 as in the paper (with a warning), or Options.Resolution.
//   - A checkpoint may hold several weight sets (raw and EMA: keys prefixed
//     "ema_", nested under "ema"/"state_dict"/"model", "module." from
//     DataParallel); each is found by where its conv_in.weight is. EMA is taken
//     unless Options.Raw; Model.EMA and EMAWhy say which and how it is known
//     (the set's key, safetensors metadata we write, or "ema" in the path, as in
//     the port's ema_diffusion_cifar10_model/model-790000.ckpt and google's
//     ddpm-ema-* folders).
//   - Diffusers names map one to one onto the interchange names (diffusers.go
//     has the table); both the attention names of the published files (query,
//     key, value, proj_attn) and current ones (to_q, to_k, to_v, to_out.0) are
//     read, and current ones are written. The config keys come from
//     UNet2DModel.__init__ of current diffusers; the google/ddpm-* configs
//     (diffusers 0.0.4/0.1.1) set flip_sin_to_cos false, freq_shift 1,
//     downsample_padding 0, norm_eps 1e-6, attention_head_dim null, which is
//     exactly the DDPM U-Net; any other value of a setting our U-Net does not
//     compute is an error that names it.
//   - The published configs have no dropout (a training setting): the matching
//     preset's is taken (0.1 for CIFAR-10, 0 for the 256×256 models), else 0.1.
//   - Exported .ckpt files are written by our pickle writer and archive/zip in
//     torch.save's own layout (records 64-byte aligned, version 3) and the
//     port's state_dict order; no Go library writes pickles. Both exports are
//     atomic (a file by internal/atomicfile, a folder filled under a temporary
//     name and renamed).
package weights
