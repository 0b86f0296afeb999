"""Files: the growstage HDF5 store, readers for other checkpoint formats, training-checkpoint
directories and whole-file operations.  numpy and h5py; TensorFlow only inside the TF readers."""
