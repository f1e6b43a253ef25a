// Reading Hugging Face ModuleFormer checkpoints, in the browser and in Node. node-files.ts is
// not re-exported here, so that importing this module never pulls node: APIs into a browser
// bundle; Node callers import it directly.
export { type Checkpoint, openCheckpoint } from './hf-folder.ts';
export { expectedTensorShapes, isUnusedBuffer } from '../tensor-names.ts';
export { openSafetensors } from './safetensors.ts';
export { openTorchBin } from './torch-bin.ts';
export { type PickledTensor, readTorchStateDict } from './torch-pickle.ts';
export { type ZipArchive, type ZipEntry, openZip } from './zip.ts';
export type { TensorFile } from './tensor-file.ts';
export { blobFileSource, urlFileSource } from './web-files.ts';
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, toFloat32, toFloat64 } from './dtype.ts';
export { DTYPE_BYTES, type ByteSource, type DType, type FileSource, type TensorInfo, type TensorSource } from './types.ts';
