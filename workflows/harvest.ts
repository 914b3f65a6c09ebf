// Placeholder: the signal harvest workflow lives here.
export {};
