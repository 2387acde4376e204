// Why an item failed, in words a person understands. The API's codes are stable
// (the processor's reasons); the words are for people.
const WORDS = {
  NotAnImage: 'This file is not a picture: its contents are no image format.',
  Truncated: 'The picture is cut short: the file is incomplete (an interrupted copy?).',
  CorruptImage: 'The picture is damaged and cannot be read.',
  UnsupportedFormat: 'This image format is not supported; use JPEG, PNG, WebP, GIF, AVIF or HEIC.',
  SourceTooLarge: 'The file is too large to process.',
  DecompressionBomb: 'The picture has too many pixels to process safely.',
  TooLargeForMemory: 'The picture is too large for the processing service\u2019s memory.',
  TooManyFrames: 'The animation has too many frames.',
  EmptyFile: 'The file is empty.',
  SourceMissing: 'The upload was not found (it may have expired); add the file again.',
  UploadNotInCollection: 'The upload was made for another collection; add the file again.',
  UploadAlreadyIngested: 'This upload was already added once; add the file again.',
  SourceChanged: 'The upload changed while it was processed; add the file again.',
  RetriesExhausted: 'The service kept having trouble with it; try again later.',
  Cancelled: 'Processing was cancelled.',
  RenderFailed: 'The picture could not be converted.',
  UnknownProfile: 'The processing settings are not known (ask your administrator).',
  InvalidStyles: 'The processing settings are invalid (ask your administrator).',
  InvalidMessage: 'The processing request was unreadable (ask your administrator).',
  InvalidKey: 'The storage refused the name this picture is stored under (ask your administrator).',
};

export function reasonInWords(code) {
  return WORDS[code] || `It could not be processed (${code || 'unknown reason'}).`;
}
