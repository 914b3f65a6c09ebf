// Placeholder: the prospect intake workflow lives here.
export {};
