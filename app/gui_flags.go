package main

// guiCmd opens the window; it is the default when no subcommand is given.
type guiCmd struct {
	Data         string `default:"${data}" help:"Dataset to open: a folder of images, or mnist (built in)."`
	Runs         string `help:"Folder for training runs (default: ~/.local/share/ddpm-studio/runs, or under XDG_DATA_HOME if set)."`
	Renderer     string `default:"auto" enum:"auto,gl,cpu" help:"How grids and curves are drawn: auto (OpenGL if it works, else CPU), gl or cpu."`
	Preset       string `default:"${preset}" help:"Model preset selected in the Train screen."`
	Steps        int64  `default:"${steps}" help:"Initial value of the Steps field."`
	Batch        int    `default:"${batch}" help:"Initial value of the Batch field."`
	PreviewEvery int64  `default:"${preview_every}" help:"Initial value of the Preview every field (steps between preview samplings)."`
	Train        bool   `help:"Start training as soon as the dataset is loaded."`
	deviceFlag   `embed:""`
	Report       string `hidden:"" help:"Once the loss curve and the preview grid are drawn, write their window positions here as JSON (for the real-window test)."`
}
